"""What a Ray worker imports, and the scipy.stats-free cdf it relies on.

Every Ray worker imports `distsim.runner.task` before its first task; scipy.stats (~1 s of CPU),
statsmodels, pandas and matplotlib are only needed by the driver (aggregation, trace files,
plots), so they must not come with it. The offered load needs a rounded mean of the token
distributions, which used scipy.stats' cdf; it now evaluates the same scipy.special functions
directly, and must give the same numbers bit for bit.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from distsim.spec.study import Exponential, Lognormal, Uniform
from distsim.workload import distributions

HEAVY = ("scipy.stats", "statsmodels", "pandas", "matplotlib", "pyarrow")

_WORKER = """
import json, sys
from distsim.runner.task import Unit, run_batch, load_kernels
from distsim.spec.study import load_study
load_kernels()
scenario = load_study(sys.argv[1]).scenario()  # what a task receives
archs = tuple(scenario.architectures)
out = run_batch({"s": scenario}, [Unit("s", 0, archs)])
assert len(out.rows) == len(archs) == 2 and not out.errors, out.errors
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in HEAVY_ROOTS
                        or m in HEAVY_ROOTS)))
"""


@pytest.mark.slow
def test_a_worker_running_a_task_imports_no_driver_only_library(tmp_path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: s\nseed: 1\nduration_s: 60\nwarmup_s: 0\n"
        "workload:\n  arrival: {process: poisson, rate_rps: 2.0}\n"
        "  prompt_tokens: {dist: lognormal, mu: 6.0, sigma: 0.9, min: 8}\n"
        "  output_tokens: {dist: exponential, mean: 200}\n"
        "gpu: {prefill_tokens_per_s: 8000, decode_tokens_per_s: 2000}\n"
        "architectures:\n  m: {kind: monolithic, gpus: 2}\n"
        "  d: {kind: disaggregated, prefill_gpus: 1, decode_gpus: 1}\n"
        "baseline: m\nreplications: 2\n"
    )
    code = f"HEAVY_ROOTS = {HEAVY!r}\n" + _WORKER
    out = subprocess.run(
        [sys.executable, "-c", code, str(spec)], capture_output=True, text=True, check=True
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert [m for m in loaded if m in HEAVY] == []


_DISTS = [
    Lognormal(dist="lognormal", mu=6.0, sigma=0.9, min=8),
    Lognormal(dist="lognormal", mu=-1.5, sigma=3.2),
    Lognormal(dist="lognormal", mu=11.0, sigma=0.05),
    Exponential(dist="exponential", mean=0.7),
    Exponential(dist="exponential", mean=250.0),
    Uniform(dist="uniform", low=0.0, high=3.0),
    Uniform(dist="uniform", low=100.0, high=5000.0),
]


@pytest.mark.parametrize("dist", _DISTS, ids=lambda d: f"{d.dist}")
def test_cdf_and_sf_equal_scipy_stats_bit_for_bit(dist) -> None:
    ref = distributions.frozen(dist)  # scipy.stats
    rng = np.random.default_rng(7)
    low = float(getattr(dist, "low", 1.0))
    high = float(getattr(dist, "high", 2.0))
    x = np.concatenate(
        (np.arange(1, 2000) + 0.5, rng.uniform(1e-3, 1e6, 2000), [low, high, low + 1e-9, 1e17])
    )
    x = x[x > 0]
    assert np.array_equal(distributions._cdf(dist, x), ref.cdf(x))
    assert np.array_equal(distributions._sf(dist, x), ref.sf(x))


def test_the_driver_of_a_ray_run_imports_no_simulation_engine() -> None:
    """`distsim run` hands `run_batch` to Ray and aggregates; numba (~60 MB) stays out of it."""
    engines = [
        f"distsim.sim.{m}"
        for m in ("replication", "jit", "fast_exclusive", "simpy_exclusive", "batched")
        + ("batched_simpy", "fast_batched", "metrics", "timeline")
    ]
    code = (
        f"ENGINES = {engines!r}\n"
        "import sys, json\n"
        "import distsim, distsim.cli, distsim.runner.study, distsim.runner.execute, distsim.runner.warmup\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'numba' or "
        "m in ENGINES)))\n"
        "assert callable(distsim.simulate) and distsim.simulate.__name__ == 'simulate'\n"
        "import distsim.sim.replication\n"  # loading the engine module changes nothing
        "assert callable(distsim.simulate) and distsim.Replication.__name__ == 'Replication'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[0]) == []
