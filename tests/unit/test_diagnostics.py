"""Warm-up detection (MSER-5), stability, trend and precision planning."""

from __future__ import annotations

import math

import numpy as np
import pytest
from mmc_truth import mmc_scenario

from distsim.sim.metrics import offered_load
from distsim.sim.replication import simulate_requests
from distsim.stats.diagnostics import (
    TimeProfile,
    detect_warmup,
    duration_to_clear,
    mser,
    next_wave,
    quantile_run_too_short,
    relative_half_width,
    replications_needed,
    ttft_trend,
    unstable_pools,
    warmup_short,
    waves_left,
)
from distsim.stats.intervals import Interval
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
