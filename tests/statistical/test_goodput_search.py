"""Goodput by search against a known capacity: monolithic M/M/c pools whose TTFT is the M/M/c
sojourn time (`mmc_truth`), so the rate at which P(TTFT <= 3 s) = 0.9 follows from Erlang C:
per GPU 0.501 (c = 2), 0.630 (c = 3), 0.705 (c = 4) req/s."""

from __future__ import annotations

import math

import numpy as np
import pytest
from mmc_truth import PROMPT_MEAN_TOKENS, sojourn_sf
from scipy import optimize

from distsim.runner import goodput_search as gsearch
from distsim.runner.plan import plan_study
from distsim.runner.selection import Rows
from distsim.spec.study import Study
from distsim.stats import rate_search

SLO_S, TARGET = 3.0, 0.9


def capacity_rps(c: int) -> float:
    return optimize.brentq(lambda lam: 1 - sojourn_sf(SLO_S, c, lam, 1.0) - TARGET, 1e-6, c - 1e-9)


def test_search_on_an_exact_curve_brackets_the_crossing():
    """Attainment 1.5 - rate in every replication (no spread): crossing at 0.6 exactly."""
    low, high, p = 0.1, 2.0, 0.02
    top = rate_search.grid_size(low, high, p)
    att = {i: np.full(4, min(1.0, max(0.0, 1.5 - rate_search.grid_rate(low, p, i))))
           for i in range(top + 1)}  # fmt: skip
    s = rate_search.replay(att, low, high, p, 0.9, 0.95, 4)
    assert s.need is None and s.censored == ""
    assert s.estimate == pytest.approx(0.6, rel=1e-9)  # linear between grid points: exact
    assert s.low <= 0.6 <= s.high and s.high / s.low <= (1 + p / 2) ** 2
    assert len(s.probes) < 40  # bisection, not the whole grid of ~300 rates


def test_search_names_the_probe_it_needs_and_censors():
    s = rate_search.replay({}, 0.1, 2.0, 0.02, 0.9, 0.95, 4)
    assert s.need == 0
    fails = rate_search.replay({0: np.zeros(4)}, 0.1, 2.0, 0.02, 0.9, 0.95, 4)
    assert fails.censored == "below" and fails.estimate == 0.0


def mmc_select_study(seed: int) -> Study:
    return Study.model_validate({
        "name": "goodput-search", "seed": seed, "duration_s": 400.0, "warmup_s": 40.0,
        "workload": {"arrival": {"process": "poisson", "rate_rps": 1.0},
                     "prompt_tokens": {"dist": "exponential", "mean": PROMPT_MEAN_TOKENS},
                     "output_tokens": {"dist": "constant", "value": 1}},
        "gpu": {"prefill_tokens_per_s": PROMPT_MEAN_TOKENS, "decode_tokens_per_s": 1e12},
        "architectures": {f"m{c}": {"kind": "monolithic", "gpus": c} for c in (2, 3, 4)},
        "slo": {"ttft_s": SLO_S},
        "replications": 5, "confidence": 0.9,
        "select": {"objective": "goodput_rps_per_gpu", "indifference": 0.05,
                   "goodput": {"attainment": TARGET, "low_rps_per_gpu": 0.2,
                               "high_rps_per_gpu": 1.0, "rel_precision": 0.02}},
    })  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_goodput_search_selects_against_erlang_c(seed):
    plan = plan_study(mmc_select_study(seed))
    rows = Rows()
    [sel] = gsearch.drive(plan, gsearch.Grid(plan), rows, gsearch.local_simulator(rows))
    by = {r.architecture: r for r in sel.ranking}
    assert sel.best == "m4" and by["m2"].status == "eliminated"
    for c in (2, 3, 4):
        truth = capacity_rps(c) / c
        r = by[f"m{c}"]
        assert r.ci_low <= truth <= r.ci_high, (c, r, truth)
        assert math.isfinite(r.ci_high)
    # m3 is 11% behind (more than the 5% indifference): separated, not tied
    assert by["m3"].status == "eliminated"


PRICE_USD_PER_GPU_HOUR = {2: 1.0, 3: 1.0, 4: 2.0}  # m4's GPUs cost twice as much


@pytest.mark.slow
def test_goodput_per_dollar_selects_against_erlang_c():
    """`goodput_requests_per_usd` = goodput (req/s) x 3600 / (USD per hour of all GPUs): with
    m4 at twice the price, m3 serves the most requests per dollar (truth from Erlang C: m2 1,804,
    m3 2,268, m4 1,269 req/USD)."""
    data = mmc_select_study(3).model_dump(mode="json", exclude_none=True)
    data["select"]["objective"] = "goodput_requests_per_usd"
    for c in (2, 3, 4):
        data["architectures"][f"m{c}"]["gpu"] = {
            "prefill_tokens_per_s": PROMPT_MEAN_TOKENS,
            "decode_tokens_per_s": 1e12,
            "usd_per_hour": PRICE_USD_PER_GPU_HOUR[c],
        }
    plan = plan_study(Study.model_validate(data))
    rows = Rows()
    [sel] = gsearch.drive(plan, gsearch.Grid(plan), rows, gsearch.local_simulator(rows))
    by = {r.architecture: r for r in sel.ranking}
    assert sel.best == "m3"
    for c in (2, 3, 4):
        truth = capacity_rps(c) * 3600.0 / (c * PRICE_USD_PER_GPU_HOUR[c])
        r = by[f"m{c}"]
        assert r.ci_low <= truth <= r.ci_high, (c, r, truth)
