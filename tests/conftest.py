"""Shared fixtures and helpers: small scenarios built from plain dicts, as a user would write them."""

from __future__ import annotations

import copy
import os
from typing import Any

# Ray in tests: loopback only and no usage reporting. Ray reads these when it is imported, so they
# are set here, before any test module imports it.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

import pytest

from distsim.spec import Scenario, Study

BASE_STUDY: dict[str, Any] = {
    "name": "test",
    "seed": 7,
    "duration_s": 60.0,
    "warmup_s": 5.0,
    "workload": {
        "arrival": {"process": "poisson", "rate_rps": 2.0},
        "prompt_tokens": {"dist": "lognormal", "mu": 6.0, "sigma": 0.9, "min": 8},
        "output_tokens": {"dist": "lognormal", "mu": 6.0, "sigma": 1.1, "min": 16},
    },
    "gpu": {"prefill_tokens_per_s": 8000, "decode_tokens_per_s": 2000},
    "architectures": {
        "monolithic": {"kind": "monolithic", "gpus": 4},
        "disaggregated": {"kind": "disaggregated", "prefill_gpus": 2, "decode_gpus": 2},
    },
    "baseline": "monolithic",
    "replications": 3,
}


def study_dict(**changes: Any) -> dict[str, Any]:
    """A copy of the base study with top-level keys replaced."""
    data = copy.deepcopy(BASE_STUDY)
    data.update(copy.deepcopy(changes))
    return data


def make_study(**changes: Any) -> Study:
    return Study.model_validate(study_dict(**changes))


def make_scenario(**changes: Any) -> Scenario:
    return make_study(**changes).scenario()


@pytest.fixture
def base_study_dict() -> dict[str, Any]:
    return study_dict()
