"""Impossible work: `validate` and `run` estimate simulated requests, time and memory up front
and refuse a study far beyond the machine (one line with the estimate, exit 2) unless --force.

The estimate is checked against a hand count (rate x duration x architectures x replications x
scenarios) and its per-request and per-row byte figures against tracemalloc and pandas on a real
replication. No Ray: a refused run must not start it, and a forced one is stopped right after
the check.
"""

from __future__ import annotations

import math
import sys
import tracemalloc
from pathlib import Path

import pandas as pd
import pytest
import yaml
from distsim_testkit import study_dict
from typer.testing import CliRunner

from distsim.cli import app
from distsim.errors import StoreError
from distsim.runner import budget
from distsim.runner.plan import plan_study
from distsim.runner.task import Unit, run_unit
from distsim.spec.study import validate_study

ROOT = Path(__file__).resolve().parents[2]
RATE = "workload.arrival.rate_rps"
runner = CliRunner()


def huge() -> dict:
    """1e4 req/s x 1e6 s x 2 architectures x 50 replications = 1e12 simulated requests."""
    workload = study_dict()["workload"] | {"arrival": {"process": "poisson", "rate_rps": 1e4}}
    return study_dict(name="huge", duration_s=1e6, warmup_s=10.0, replications=50,
                      workload=workload)  # fmt: skip


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_the_estimate_counts_what_a_hand_count_gives():
    data = study_dict(name="count", duration_s=120.0, replications=7, sweep={RATE: [1.5, 4.0]})
    plan = plan_study(validate_study(data))
    est = budget.estimate(plan, cpus=3, available_bytes=1e12)
    by_hand = sum(rate * 120.0 * 2 * 7 for rate in (1.5, 4.0))
    assert est.requests == pytest.approx(by_hand)
    assert est.rows == 2 * 2 * 7
    assert est.cpu_s == pytest.approx(by_hand / budget.REQUESTS_PER_CPU_S["exclusive"])
    assert est.wall_s == pytest.approx(est.cpu_s / 3)
    largest_unit = 4.0 * 120.0 * 2
    assert est.task_bytes == pytest.approx(largest_unit * budget.BYTES_PER_REQUEST["exclusive"])
    assert est.worker_bytes == pytest.approx(3 * est.task_bytes)
    assert est.driver_bytes == 28 * budget.BYTES_PER_ROW * budget.DRIVER_COPIES
    assert est.problems() == []


def test_a_precision_study_bounds_its_waves_by_the_cap():
    """Waves cost at most every scenario run on to max_replications: by hand, (cap - first
    replications) x the requests of one replication of each scenario, at the engine's speed."""
    data = study_dict(
        name="waves", duration_s=120.0, replications=7, sweep={RATE: [1.5, 4.0]},
        precision={"rel_half_width": 0.05, "max_replications": 50},
    )  # fmt: skip
    plan = plan_study(validate_study(data))
    est = budget.estimate(plan, cpus=2, available_bytes=1e12)
    by_hand = sum(rate * 120.0 * 2 * (50 - 7) for rate in (1.5, 4.0))
    assert est.precision_cap_cpu_s == pytest.approx(
        by_hand / budget.REQUESTS_PER_CPU_S["exclusive"]
    )
    assert "plus the precision waves (at most " in est.line()
    assert budget.estimate(plan_study(validate_study(study_dict())), 2).precision_cap_cpu_s == 0


def test_the_byte_figures_bound_a_measured_replication():
    """Peak traced memory per simulated request, and pandas bytes per result row, of a real
    replication of both architectures stay below the figures the estimate uses."""
    data = study_dict(name="mem", duration_s=2000.0, warmup_s=5.0, gpu={
        "prefill_tokens_per_s": 800_000, "decode_tokens_per_s": 200_000})  # fmt: skip
    data["workload"]["arrival"]["rate_rps"] = 20.0
    plan = plan_study(validate_study(data))
    ps = plan.scenarios[0]
    run_unit(ps.scenario, Unit(ps.id, 1, plan.architectures))  # compile / load kernels first
    tracemalloc.start()
    try:
        out = run_unit(ps.scenario, Unit(ps.id, 0, plan.architectures))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not out.errors
    requests = sum(r["n_requests"] for r in out.rows)  # measured ones: fewer than simulated
    assert requests > 50_000
    assert peak / requests < budget.BYTES_PER_REQUEST["exclusive"]
    rows = pd.DataFrame.from_records(out.rows)
    assert rows.memory_usage(deep=True).sum() / len(rows) < budget.BYTES_PER_ROW


def test_validate_refuses_1e12_requests_with_the_estimate_unless_forced(tmp_path):
    spec = write(tmp_path / "huge.yaml", huge())
    result = invoke("validate", spec)
    assert result.exit_code == 2
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and result.stderr.count("\n") == 1
    line = errors[0]
    assert "study too large" in line and "~1e12 simulated requests" in line
    assert "more memory than" in line and "--force" in line
    assert "estimate       ~1e12 simulated requests" in result.stdout  # the plan is still shown
    forced = invoke("validate", spec, "--force")
    assert forced.exit_code == 0, forced.stderr
    assert forced.stderr.startswith("warning: ") and "(--force given)" in forced.stderr


def test_run_refuses_before_writing_anything_or_starting_ray(tmp_path):
    spec = write(tmp_path / "huge.yaml", huge())
    out = tmp_path / "out"
    result = invoke("run", spec, "--out", out, "--quiet")
    assert result.exit_code == 2 and result.stderr.startswith("error: study too large")
    assert not out.exists()
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized()


def test_run_with_force_goes_past_the_check(tmp_path, monkeypatch):
    """--force lets the run continue to the next step (opening the store, stopped here)."""
    import distsim.runner.study as study_mod

    def stop(*args: object, **kwargs: object):
        raise StoreError("reached the store")

    monkeypatch.setattr(study_mod.ResultStore, "open", stop)
    spec = write(tmp_path / "huge.yaml", huge())
    result = invoke("run", spec, "--out", tmp_path / "out", "--quiet", "--force")
    assert result.exit_code == 2 and "reached the store" in result.stderr


def test_the_default_study_is_well_within_the_machine():
    result = invoke("validate", ROOT / "studies" / "default.yaml")
    assert result.exit_code == 0, result.stderr
    # 2 req/s x 300 s x 2 architectures x 30 replications.
    assert "estimate       ~36,000 simulated requests" in result.stdout


def test_limits_by_time_and_by_memory_and_on_a_cluster():
    plan = plan_study(validate_study(huge()))
    local = budget.estimate(plan, cpus=2, available_bytes=1e15)  # memory is not the issue here
    assert local.problems() == ["more than 24.0 h on 2 CPUs"]
    assert local.wall_s > 1e5
    # Joining a cluster of unknown size: no time limit, the memory limit still applies.
    cluster = budget.estimate(plan, cpus=None, available_bytes=1e15)
    assert cluster.problems() == []
    assert "on the cluster" in cluster.line()
    small_memory = budget.estimate(plan, cpus=None, available_bytes=1e9)
    assert small_memory.problems() == ["more memory than the 1 GB available"]
    assert budget.planned_cpus("10.0.0.1:6379", None) is None
    assert budget.planned_cpus(None, 3) == 3
    assert not math.isnan(local.memory_bytes)
