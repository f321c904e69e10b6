"""The study's answer on the batched engine (no Ray: rows come from the task function a worker
runs): overload is decided from the engine that ran, a stable study's comparisons are tested and
read in words, an overloaded one's read "not tested", and every comparison's p-value and two
intervals agree."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from distsim.report.terminal import render, verdict
from distsim.runner.plan import plan_study
from distsim.runner.store import with_params
from distsim.runner.study import aggregate_rows, missing_units
from distsim.runner.task import run_batch
from distsim.spec.study import validate_study

# The light batched study: 2 GPUs of OPT-13B at 2 req/s (the exclusive engine's token
# rates would call its decode pool overloaded; continuous batching serves it easily).
LIGHT = {
    "name": "light", "seed": 11, "duration_s": 120.0, "warmup_s": 20.0, "engine": "batched",
    "model": {"preset": "opt-13b"}, "gpu": {"preset": "a100-80gb"},
    "workload": {
        "arrival": {"process": "poisson", "rate_rps": 2.0},
        "prompt_tokens": {"dist": "lognormal", "mu": 6.158, "sigma": 0.4, "min": 16, "max": 2048},
        "output_tokens": {"dist": "lognormal", "mu": 4.034, "sigma": 0.5, "min": 2, "max": 512},
    },
    "architectures": {
        "monolithic": {"kind": "monolithic", "gpus": 2, "max_batch_size": 128},
        "disaggregated": {"kind": "disaggregated", "prefill_gpus": 1, "decode_gpus": 1,
                          "max_batch_size": 128},
    },
    "baseline": "monolithic", "replications": 4,
}  # fmt: skip


def aggregate(spec: dict) -> tuple:
    plan = plan_study(validate_study(spec))
    batch = run_batch({ps.id: ps.scenario for ps in plan.scenarios}, missing_units(None, plan))
    rows = with_params(pd.DataFrame.from_records(batch.rows), plan)
    summary, _, detail = aggregate_rows(rows, plan)
    return plan, summary, detail


@pytest.fixture(scope="module")
def light() -> tuple:
    return aggregate(LIGHT)


@pytest.fixture(scope="module")
def overloaded() -> tuple:
    # 1 + 1 GPUs at 14 req/s with small batches: the prefill pool cannot keep up
    archs = {
        "monolithic": {"kind": "monolithic", "gpus": 2, "max_batch_size": 128},
        "disaggregated": {"kind": "disaggregated", "prefill_gpus": 1, "decode_gpus": 1,
                          "max_batch_size": 4},
    }  # fmt: skip
    heavy = {**LIGHT, "architectures": archs, "duration_s": 90.0, "warmup_s": 10.0}
    heavy["workload"] = {**LIGHT["workload"], "arrival": {"process": "poisson", "rate_rps": 14.0}}
    return aggregate(heavy)


def test_a_stable_batched_study_is_tested_and_answered(light) -> None:
    plan, summary, detail = light
    assert not summary["flags"].str.contains("unstable").any()
    assert not summary["metric"].str.startswith("offered_load_").any()  # exclusive-engine figure
    assert detail["tested"].all() and (detail["not_tested"] == "").all()
    assert (detail["significant"] == (detail["p_adjusted"] < 0.05)).all()
    sig = detail[detail["significant"]]
    assert len(sig)  # differences it can see are reported (measured: mean E2E, P99 TPOT)
    for _, row in sig.iterrows():
        word = "lowers" if row["rel_diff"] < 0 else "raises"
        assert verdict(row, plan).startswith(f"disaggregated {word} ") and "Holm" in verdict(
            row, plan
        )
    out = render(plan, summary, detail)
    assert "▶ mean TTFT: no significant difference, disaggregated vs monolithic" in out


def test_an_overloaded_batched_study_is_not_tested(overloaded) -> None:
    plan, summary, detail = overloaded
    flagged = summary[summary["flags"].str.contains("unstable")]
    assert set(flagged["architecture"]) == {"disaggregated"}
    assert not detail["tested"].any() and not detail["significant"].any()
    assert detail["not_tested"].str.startswith("not tested: disaggregated is overloaded").all()
    line = verdict(detail[detail["metric"] == "ttft_p99_s"].iloc[0], plan)
    assert line.startswith("P99 TTFT: not tested: disaggregated is overloaded (its TTFT grows")
    assert "no significant difference" not in render(plan, summary, detail)


@pytest.mark.parametrize("case", ["light", "overloaded"])
def test_p_value_and_intervals_agree_and_latencies_stay_positive(case, request) -> None:
    _, summary, detail = request.getfixturevalue(case)
    for r in detail.itertuples():
        if not (math.isfinite(r.rel_ci_low) and math.isfinite(r.rel_ci_high)):
            continue
        rejected = r.p_value < 0.05
        assert rejected == (r.diff_ci_low > 0 or r.diff_ci_high < 0), r
        assert rejected == (r.rel_ci_low > 0 or r.rel_ci_high < 0), r
    latency = summary[summary["metric"].str.match(r"^(ttft|e2e|tpot)_")]
    assert (latency["ci_low"].to_numpy(dtype=float) >= 0).all()
    assert np.isfinite(latency["estimate"].to_numpy(dtype=float)).all()


def test_a_headline_resting_on_a_flagged_interval_says_so() -> None:
    """The headline carries a caution when the architecture's or the baseline's interval for
    that metric is flagged run_too_short, and nothing otherwise (hand-made rows)."""
    from distsim.report.terminal import caution

    row = {"scenario_id": "s1", "metric": "ttft_mean_s", "architecture": "disagg",
           "baseline": "mono", "tested": True}  # fmt: skip
    summary = pd.DataFrame(
        {
            "scenario_id": ["s1", "s1", "s1", "s2"],
            "architecture": ["mono", "disagg", "disagg", "mono"],
            "metric": ["ttft_mean_s", "ttft_mean_s", "ttft_p99_s", "ttft_mean_s"],
            "flags": ["", "run_too_short", "", "run_too_short"],
        }
    )
    assert caution(row, summary) == (
        " · caution: disagg's interval may be too short (run_too_short; see the flags)"
    )
    assert caution({**row, "metric": "ttft_p99_s"}, summary) == ""  # its interval is not flagged
    both = summary.assign(flags=["run_too_short", "run_too_short;unstable", "", ""])
    assert "disagg and mono's interval" in caution(row, both)
    assert caution({**row, "tested": False}, summary) == ""  # untested says why on its own
