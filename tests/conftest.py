"""Test-session set-up and the fixtures every folder shares; plain helpers live in
`distsim_testkit.py` (imported by name, never as `tests.conftest`)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Ray in tests: loopback only and no usage reporting. Ray reads these when it is imported, so they
# are set here, before any test module imports it.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

RAY_SESSION_CPUS = 2


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    """One local Ray instance (2 CPUs, 127.0.0.1) for the test module that asks for it; study
    runs inside the module use it as an already-initialised session. `address="local"` starts a
    new instance, never one another process started on this machine."""
    import ray

    ray.init(address="local", num_cpus=RAY_SESSION_CPUS, include_dashboard=False,
             logging_level="ERROR", log_to_driver=False)  # fmt: skip
    try:
        assert {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]} == {"127.0.0.1"}
        yield
    finally:
        ray.shutdown()
