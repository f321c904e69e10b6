"""`distsim select` against closed-form truth: splits of 8 GPUs whose pools are M/M/c queues.

Prompts and outputs are exponential (mean 10^6 tokens, so rounding is negligible) and each pool
is FCFS, so the prefill pool is M/M/c; by Burke's theorem its departures are Poisson, so the
decode pool is M/M/c too, and the mean E2E of a split is the sum of two Erlang C sojourn means
(`mmc_truth.sojourn_mean_s`). At 2.6 req/s with 0.4 s prefills and 1.0 s decodes:

    d26 1.565 s   d35 1.482 s (best)   d44 1.656 s   d53 3.298 s   d17, d62, d71 overloaded

so the best is 5.6% ahead of the runner-up, more than an indifference of 5%. Simulation runs in
this process (`runner.selection.local_simulator`), no Ray.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from mmc_truth import sojourn_mean_s
from scipy import stats

from distsim.runner.plan import plan_study
from distsim.runner.selection import Rows, drive, local_simulator
from distsim.spec.study import Study

RATE_RPS, PREFILL_S, DECODE_S, GPUS = 2.6, 0.4, 1.0, 8


def truth_e2e_s(p: int) -> float:
    d = GPUS - p
    if RATE_RPS * PREFILL_S / p >= 1 or RATE_RPS * DECODE_S / d >= 1:
        return math.inf
    return sojourn_mean_s(p, RATE_RPS, PREFILL_S) + sojourn_mean_s(d, RATE_RPS, DECODE_S)


def split_study(seed: int, **changes) -> Study:
    data = {
        "name": "mmc-select", "seed": seed, "duration_s": 150.0, "warmup_s": 30.0,
        "workload": {"arrival": {"process": "poisson", "rate_rps": RATE_RPS},
                     "prompt_tokens": {"dist": "exponential", "mean": 1e6},
                     "output_tokens": {"dist": "exponential", "mean": 1e6}},
        "gpu": {"prefill_tokens_per_s": 1e6 / PREFILL_S, "decode_tokens_per_s": 1e6 / DECODE_S},
        "candidates": {"disaggregated_splits": {"gpus": GPUS}},
        "replications": 5, "confidence": 0.9,
        "select": {"objective": "e2e_mean_s", "indifference": 0.05},
    }  # fmt: skip
    data.update(changes)
    return Study.model_validate(data)


def select(study: Study):
    plan = plan_study(study)
    rows = Rows()
    [sel] = drive(plan, rows, local_simulator(plan, rows))
    return sel


def test_truth_has_the_best_ahead_by_more_than_the_indifference():
    means = sorted(truth_e2e_s(p) for p in range(1, GPUS))
    assert means[0] == truth_e2e_s(3)
    assert math.log(means[1] / means[0]) > math.log1p(0.05)


@pytest.mark.slow
def test_correct_split_chosen_at_least_as_often_as_the_confidence():
    """150 independent selections at confidence 0.9. If P(correct selection) were exactly 0.9,
    fewer than `floor` correct would happen with probability <= 0.001 (one-sided binomial):
    the false-failure rate of this test."""
    n, conf = 150, 0.9
    floor = int(stats.binom.ppf(0.001, n, conf))
    correct = sum(select(split_study(10_000 + i)).best == "d35" for i in range(n))
    print(f"correct selections: {correct}/{n} (floor {floor})")
    assert correct >= floor, f"{correct}/{n} correct selections (need >= {floor})"


def test_overloaded_splits_are_unstable_and_the_rest_ranked():
    sel = select(split_study(1))
    status = {r.architecture: r.status for r in sel.ranking}
    assert {a for a, s in status.items() if s == "unstable"} == {"d17", "d62", "d71"}
    assert status["d53"] != "unstable"  # decode load 0.87: stable
    assert sel.best == "d35"


def test_identical_candidates_are_tied_never_one_worse():
    split = {"kind": "disaggregated", "prefill_gpus": 3, "decode_gpus": 5}
    archs = {"a": split, "b": dict(split), "c": {**split, "prefill_gpus": 4, "decode_gpus": 4}}
    for seed in range(3):
        sel = select(split_study(seed, candidates=None, architectures=archs))
        by = {r.architecture: r for r in sel.ranking}
        assert {by["a"].status, by["b"].status} == {"best", "tied"}
        other = by["b"] if by["a"].status == "best" else by["a"]
        assert other.rel_worse == 0.0 and other.rel_low == 0.0 and other.rel_high == 0.0
        assert by["c"].status == "eliminated"


def test_constraint_decided_against_erlang_c():
    """With first_token: prefill, TTFT is the prefill pool's sojourn (Erlang C): d26 0.548 s,
    d35 0.420, d44 0.403, d53 0.400. `ttft_mean_s at_least 0.45` (tolerance 5%: decided either
    way only inside [0.4275, 0.4725]) makes the E2E-best d35 infeasible and leaves d26 the only
    feasible split; `at_most 0.5` makes d26 infeasible. Every decision taken must match the
    truth (a candidate eliminated first needs none)."""
    truth = {p: sojourn_mean_s(p, RATE_RPS, PREFILL_S) for p in (2, 3, 4, 5)}
    assert truth[2] > 0.45 * 1.05 and max(truth[3], truth[4], truth[5]) < 0.45 * 0.95
    assert truth[2] > 0.5 * 1.05 and max(truth[3], truth[4], truth[5]) < 0.5 * 0.95
    cands = {"disaggregated_splits": {"gpus": GPUS, "template": {"first_token": "prefill"}}}
    for seed in range(2):
        for bound, feasible in (("at_least", {"d26"}), ("at_most", {"d35", "d44", "d53"})):
            sel_spec = {"objective": "e2e_mean_s", "indifference": 0.05,
                        "subject_to": [{"metric": "ttft_mean_s", bound: 0.45 if bound ==
                                        "at_least" else 0.5}]}  # fmt: skip
            sel = select(split_study(seed, candidates=cands, select=sel_spec))
            status = {r.architecture: r.status for r in sel.ranking}
            for c in sel.constraints:
                a, decision = c["architecture"], c["decision"]
                if decision != "undecided":
                    assert (decision == "met") == (a in feasible), (bound, a, decision)
                    assert (status[a] == "infeasible") == (decision == "violated")
            if bound == "at_least":
                assert sel.best == "d26" and status["d35"] == "infeasible"
            else:
                assert sel.best == "d35"
                assert status["d26"] in ("infeasible", "eliminated")


def test_estimates_agree_with_erlang_c():
    sel = select(split_study(5))
    for r in sel.ranking:
        if r.status in ("best", "tied", "eliminated"):
            p = int(r.architecture[1])
            t = truth_e2e_s(p)
            # its interval, widened by 5% for the bias of a 150 s run started empty
            assert r.ci_low - 0.05 * t <= t <= r.ci_high + 0.05 * t, (r, t)
    assert np.isfinite(sel.ranking[0].ci_low)
