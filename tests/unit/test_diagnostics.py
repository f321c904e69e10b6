"""Warm-up detection (MSER-5), stability, trend and precision planning."""

from __future__ import annotations

import math

import numpy as np
import pytest
from mmc_truth import mmc_scenario

from distsim.sim.metrics import offered_load
from distsim.sim.replication import simulate_requests
from distsim.stats.diagnostics import (
    MeanTail,
    TimeProfile,
    detect_warmup,
    duration_for_factor,
    duration_to_clear,
    mean_tail,
    mser,
    next_wave,
    quantile_run_too_short,
    relative_half_width,
    replications_needed,
    tail_episodes_short,
    ttft_trend,
    unstable_pools,
    warmup_short,
    waves_left,
)
from distsim.stats.intervals import Interval, quantile_section
from distsim.stats.sketch import LogHistogram
from distsim.workload.generate import generate


def profiles(
    rate_rps: float,
    service_s: float,
    gpus: int,
    duration_s: float,
    seed: int,
    replications: int = 20,
) -> list[TimeProfile]:
    """TTFT-by-arrival-time profiles of replications of an M/M/c system that starts empty."""
    scenario = mmc_scenario(rate_rps, service_s, {"m": gpus}, duration_s, 0, seed)
    out = []
    for r in range(replications):
        req = generate(scenario.workload, duration_s, seed, r)
        rep = simulate_requests(scenario, "m", r, req)
        out.append(TimeProfile.of(req.arrival_s, rep.ttft_s, duration_s))
    return out


def test_mser_on_a_planted_series() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(1000)
    transient = 5.0 * np.exp(-t / 40.0)  # settles (below noise/10) by about t = 200
    cut = mser(10.0 - transient + rng.normal(0, 0.3, t.size)).truncation
    assert 60 <= cut <= 250
    flat = mser(10.0 + rng.normal(0, 0.3, t.size))
    assert flat.truncation <= 50 and flat.reliable
    rising = mser(np.linspace(0, 10, 1000) + rng.normal(0, 0.1, 1000))
    assert not rising.reliable  # no steady state: minimum at the largest truncation allowed


def test_mser_finds_transient_of_loaded_system_started_empty() -> None:
    """M/M/1 at load 0.95 starts empty: TTFT climbs for minutes (relaxation ~ 150 s). Whether
    the cut removes the start-up bias is checked against the closed form in
    tests/statistical/test_warmup_truth.py; here only that a cut is found and flagged."""
    warmups = [detect_warmup(profiles(9.5, 0.1, 1, 1000, seed)) for seed in range(5)]
    found = [w.detected_s for w in warmups]
    assert sum(d > 0 for d in found) >= 4, found
    assert sum(warmup_short(0.0, w) for w in warmups) >= 4
    assert not any(warmup_short(600.0, w) for w in warmups)


def test_mser_finds_nothing_in_lightly_loaded_system() -> None:
    for seed in range(5):
        w = detect_warmup(profiles(2.0, 0.1, 1, 400, seed))
        assert w.detected_s == 0.0 and w.reliable
        assert not warmup_short(0.0, w)


def test_unstable_load_and_growing_ttft() -> None:
    scenario = mmc_scenario(11.0, 0.1, {"m": 1, "big": 2}, 300, 0, 1)
    loads = {
        n: offered_load(scenario.workload, scenario.gpu, a, scenario.duration_s)
        for n, a in scenario.architectures.items()
    }
    assert unstable_pools(loads["m"]) == {"gpu": pytest.approx(1.1)}
    assert unstable_pools(loads["big"]) == {}
    trend = ttft_trend(profiles(11.0, 0.1, 1, 300, 1, replications=10), warmup_s=0.0)
    assert trend.growing and trend.rel_increase > 0.5
    steady = ttft_trend(profiles(5.0, 0.1, 1, 300, 1, replications=10), warmup_s=20.0)
    assert not steady.growing


def test_run_too_short_rule_accounts_for_replications() -> None:
    # gap 0.4 over R - 1 = 1: pooled bias 0.4 against half-width 1, beyond 0.05 of it
    assert quantile_run_too_short(10.0, [9.6, 9.6], half_width=1.0)
    # the same gap with 11 replications: pooled bias 0.04, within 0.05 of the half-width
    assert not quantile_run_too_short(10.0, [9.6] * 11, half_width=1.0)
    assert not quantile_run_too_short(10.0, [10.0, 10.0], half_width=0.0)
    # what would clear it: ratio 0.4/0.05 = 8 -> measured 90 s x 1.5 x 64 + warm-up 10
    assert duration_to_clear(100.0, 10.0, 0.4) == 8650.0
    assert duration_to_clear(100.0, 10.0, 0.01) == 100.0


def test_precision_planning() -> None:
    assert relative_half_width(Interval(2.0, 1.9, 2.1, 10)) == pytest.approx(0.05)
    assert relative_half_width(Interval(0.0, 0.0, 0.0, 10)) == 0.0
    assert math.isinf(relative_half_width(Interval(0.0, -1.0, 1.0, 10)))
    # twice too wide -> four times the replications
    assert replications_needed(10, 0.10, 0.05) == 40
    assert replications_needed(10, 0.04, 0.05) == 10
    current = {"a": 10, "b": 10, "c": 30}
    needed = {"a": 40, "b": 10, "c": 1000}
    wave = next_wave(current, needed, cpus=4, max_replications=32)
    assert wave == {"a": 12, "c": 32}  # b is done; c stops at the cap
    assert next_wave({"a": 32}, {"a": 100}, cpus=4, max_replications=32) == {}
    assert waves_left(current, needed, cpus=4, max_replications=32) == math.ceil(
        (22 + 2) / 4
    )  # a capped at 32 too


def test_tail_episodes_count_bursts_once() -> None:
    """By hand: four replications of 100 values; the pooled P90 is 90 (`lower` rank of 400).
    Independent slow requests (10 per run above it) give shares 0.9 each: no spread, infinite
    episodes. Slow requests in bursts (runs 0 and 1 hold 20 each above 90, runs 2 and 3 none)
    give shares 0.8, 0.8, 1, 1: se = sd([-0.1, -0.1, 0.1, 0.1]) / 2 = 0.0577, and
    0.1^2 x 0.9 / se^2 = 2.7 episodes, far below TAIL_EPISODES_MIN."""
    base = np.arange(1.0, 101.0)
    even = [LogHistogram.of(base) for _ in range(4)]
    assert quantile_section(even, 0.9).tail_episodes == math.inf
    burst = np.concatenate([np.arange(1.0, 81.0), np.full(20, 500.0)])
    calm = np.concatenate([np.arange(1.0, 91.0), np.full(10, 85.0)])
    sec = quantile_section([LogHistogram.of(x) for x in (burst, burst, calm, calm)], 0.9)
    se = np.std([-0.1, -0.1, 0.1, 0.1], ddof=1) / 2
    assert sec.tail_episodes == pytest.approx(0.01 * 0.9 / se**2, rel=1e-9)
    assert tail_episodes_short(sec.tail_episodes) == (True, pytest.approx(12.0 / 2.7, rel=1e-9))
    assert tail_episodes_short(40.0) == (False, pytest.approx(0.3))


def test_mean_tail_share_and_score() -> None:
    """Share of the pooled sum beyond the pooled P99, and share / sqrt(episodes) against 0.015."""
    reps = [np.concatenate([np.ones(985), np.full(15, 100.0 * (1 + r % 2))]) for r in range(4)]
    tail = mean_tail([LogHistogram.of(x) for x in reps])
    above = 2 * 15 * 200.0  # the pooled P99 (0-based rank 3959: the 100s hold 3940-3969) is 100
    assert tail.share == pytest.approx(above / sum(x.sum() for x in reps), rel=1e-3)
    assert MeanTail(0.2, 100.0).score == pytest.approx(0.02)
    assert tail_episodes_short(0.0, MeanTail(0.2, 100.0)) == (
        True,
        pytest.approx((0.02 / 0.015) ** 2),
    )
    assert not tail_episodes_short(0.0, MeanTail(0.1, 100.0))[0]
    assert duration_for_factor(100.0, 10.0, 2.0) == 280.0  # 10 + 90 x 1.5 x 2
    assert duration_for_factor(100.0, 10.0, 0.5) == 100.0


def test_t_test_p_is_scipys_one_sample_t_test() -> None:
    """The warm-up and trend checks' t test gives scipy.stats.ttest_1samp's p-values."""
    from scipy import stats

    from distsim.stats.diagnostics import _t_test_p

    rng = np.random.default_rng(5)
    for _ in range(300):
        d = rng.standard_normal(int(rng.integers(2, 40))) + rng.uniform(-1.0, 1.0)
        assert _t_test_p(d, two_sided=True) == pytest.approx(
            stats.ttest_1samp(d, 0.0).pvalue, rel=1e-12
        )
        assert _t_test_p(d, two_sided=False) == pytest.approx(
            stats.ttest_1samp(d, 0.0, alternative="greater").pvalue, rel=1e-12
        )
