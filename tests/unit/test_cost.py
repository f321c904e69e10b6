"""Cost, goodput per dollar and per kWh: the summary rows worked out by hand for a small case."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from distsim_testkit import study_dict

from distsim.runner.plan import plan_study
from distsim.spec.study import validate_study
from distsim.stats import cost
from distsim.stats.goodput import GOODPUT_METRIC, GOODPUT_SCENARIO, RATE_PATH, RATIO_METRIC


def small_plan():
    """mono: 2 H100 at $3.348/h and 700 W; split: 1 H100 prefill + 2 A100 decode with the A100
    priced by the study at $2/h (power: the preset's 400 W)."""
    data = study_dict(
        model={"preset": "llama-3.1-8b"},
        gpu={"preset": "a100-80gb", "usd_per_hour": 2.0},
        slo={"ttft_s": 1.0},
        goodput={"rates_rps": [1, 2, 3]},
        architectures={
            "mono": {"kind": "monolithic", "gpus": 2, "gpu": {"preset": "h100-sxm"}},
            "split": {
                "kind": "disaggregated",
                "prefill_gpus": 1,
                "decode_gpus": 2,
                "prefill_gpu": {"preset": "h100-sxm"},
            },
        },  # fmt: skip
        baseline="mono",
    )
    return plan_study(validate_study(data))


def test_cost_rows_by_hand() -> None:
    plan = small_plan()
    ps = plan.scenarios[0]
    summary = pd.DataFrame(
        [{"scenario_id": ps.id, **ps.params, "architecture": a, "metric": "n_requests",
          "estimate": 100.0, "ci_low": 90.0, "ci_high": 110.0, "n": 7, "flags": ""}
         for a in ("mono", "split")]
    )  # fmt: skip
    rows = cost.cost_rows(summary, plan)
    got = rows[rows["scenario_id"] == ps.id].set_index("architecture")
    assert got.loc["mono", "estimate"] == pytest.approx(2 * 3.348)
    assert got.loc["split", "estimate"] == pytest.approx(3.348 + 2 * 2.0)
    assert (got["ci_low"] == got["estimate"]).all() and (got["ci_high"] == got["estimate"]).all()
    assert set(got["metric"]) == {"cost_usd_per_hour"} and set(got["n"]) == {7}


def test_goodput_per_dollar_and_kwh_by_hand() -> None:
    """mono: 1.5 req/s/GPU [1.2, 1.8] on 2 GPUs = 3 req/s = 10,800 req/h; / $6.696 = 1,612.9
    req/$; / 1.4 kW = 7,714 req/kWh. split: 1.0 [0.9, 1.1] on 3 GPUs = 10,800 req/h; / $7.348 =
    1,469.8 req/$; / (0.7 + 0.8) kW = 7,200 req/kWh. Per-dollar ratio split/mono = goodput ratio
    (1.0/1.5 per GPU, interval [0.6, 0.8]) x (3 / 7.348) / (2 / 6.696) = 0.9113."""
    plan = small_plan()
    base = {"scenario_id": GOODPUT_SCENARIO, RATE_PATH: np.nan, "n": 20}
    goodput_rows = pd.DataFrame(
        [
            {**base, "architecture": "mono", "metric": GOODPUT_METRIC,
             "estimate": 1.5, "ci_low": 1.2, "ci_high": 1.8},
            {**base, "architecture": "split", "metric": GOODPUT_METRIC,
             "estimate": 1.0, "ci_low": 0.9, "ci_high": 1.1},
            {**base, "architecture": "split", "metric": RATIO_METRIC,
             "estimate": 1.0 / 1.5, "ci_low": 0.6, "ci_high": 0.8},
        ]
    )  # fmt: skip
    out = cost.goodput_cost_rows(goodput_rows, plan).set_index(["architecture", "metric"])
    usd = out.xs(cost.PER_USD_METRIC, level="metric")
    assert usd.loc["mono", "estimate"] == pytest.approx(10_800 / 6.696)
    assert usd.loc["mono", "ci_low"] == pytest.approx(1.2 * 7_200 / 6.696)
    assert usd.loc["split", "estimate"] == pytest.approx(10_800 / 7.348)
    assert usd.loc["split", "ci_high"] == pytest.approx(1.1 * 3 * 3_600 / 7.348)
    kwh = out.xs(cost.PER_KWH_METRIC, level="metric")
    assert kwh.loc["mono", "estimate"] == pytest.approx(10_800 / 1.4)
    assert kwh.loc["split", "estimate"] == pytest.approx(10_800 / 1.5)
    ratio = out.loc[("split", cost.PER_USD_RATIO_METRIC)]
    factor = (3 / 7.348) / (2 / 6.696)
    assert ratio["estimate"] == pytest.approx(
        usd.loc["split", "estimate"] / usd.loc["mono", "estimate"]
    )
    assert ratio["ci_low"] == pytest.approx(0.6 * factor)
    assert ratio["n"] == 20


def test_hardware_lines_name_each_pool_gpu() -> None:
    plan = small_plan()
    lines = cost.hardware_lines(plan.scenarios[0].scenario, ["mono", "split"])
    assert lines[0] == "mono: 2 x h100-sxm · $6.70/h · 1.40 kW rated"
    assert (
        lines[1] == "split: prefill 1 x h100-sxm + decode 2 x a100-80gb · $7.35/h · 1.50 kW rated"
    )


def test_report_lines_flag_a_censored_goodput_and_the_ratio_verdict() -> None:
    """mono meets the SLO at the top rate (1.5 req/s/GPU x 2 GPUs = 3 = max(rates_rps)): its
    per-dollar figures are lower bounds. The split/mono per-GPU goodput ratio [0.3, 0.5] times
    (3 / 7.348) / (2 / 6.696) = 1.367 gives [0.41, 0.68] per dollar, below 1: fewer per dollar."""
    plan = small_plan()
    base = {"scenario_id": GOODPUT_SCENARIO, RATE_PATH: np.nan, "n": 20}
    goodput_rows = pd.DataFrame(
        [
            {**base, "architecture": "mono", "metric": GOODPUT_METRIC,
             "estimate": 1.5, "ci_low": 1.2, "ci_high": 1.5},
            {**base, "architecture": "split", "metric": GOODPUT_METRIC,
             "estimate": 0.5, "ci_low": 0.4, "ci_high": 0.6},
            {**base, "architecture": "split", "metric": RATIO_METRIC,
             "estimate": 1.0 / 3.0, "ci_low": 0.3, "ci_high": 0.5},
        ]
    )  # fmt: skip
    summary = pd.concat([goodput_rows, cost.goodput_cost_rows(goodput_rows, plan)])
    lines = cost.report_lines(plan, summary)
    mono = next(line for line in lines if line.strip().startswith("mono "))
    split = next(line for line in lines if line.strip().startswith("split "))
    assert "lower bounds" in mono and "lower bounds" not in split
    assert lines[-1] == "    split / mono per dollar: 0.46x [0.41, 0.68] (fewer per dollar)"
