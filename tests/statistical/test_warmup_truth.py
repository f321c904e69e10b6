"""Warm-up truncation against the closed form: after cutting at the detected warm-up, the mean TTFT
of a system that started empty must be the steady-state mean, not the transient's.

M/M/1 at load 0.95 (service 0.1 s, so TTFT = sojourn time, mean 1/(mu - lambda) = 2 s exactly;
relaxation time about 150 s) starts empty and runs 1000 s. Each of SETS = 800 independent sets of
20 replications gets its warm-up from `detect_warmup` (MSER-5 on the replications' profiles, as
`warmup_s: auto` does); the mean TTFT of the requests arriving after it, averaged over all
replications, must be within TOLERANCE = 3% of 2 s. Starting empty biases the mean only
downwards, and a cut too late only adds noise, so the check is one-sided (bias >= -3%), with a
loose +3% guard against a cut that selects high stretches.

Measured on these seeds (`python -m pytest tests/statistical/test_warmup_truth.py -s` prints it):
truncated -1.85% +- 0.31% (s.e. over the 800 sets), untruncated -3.87% +- 0.27%. So MSER-5 on
20 replications removes about half of the start-up bias, not all of it (its median cut is 40 s
against the ~150 s relaxation time, and 0 s in 26% of the sets).

False-failure rate: with the measured residual bias -1.85% and s.e. 0.31%, a change of random
streams fails the lower bound with probability P(Z < -3.7) ~ 1e-4 (normal approximation over 800
sets). The named wrong implementation — no truncation (or a cut in the wrong unit, far too short)
— leaves the untruncated -3.87% +- 0.27%, which fails with probability 1 - P(Z < -3.2) ~ 0.999;
running it once with `detect_warmup` replaced by a zero cut: bias -3.87%, the test fails.
"""

from __future__ import annotations

import numpy as np
import pytest
from mmc_truth import mmc_scenario, sojourn_mean_s

from distsim.sim.replication import simulate_requests
from distsim.stats.diagnostics import TimeProfile, detect_warmup
from distsim.workload.generate import generate

RATE_RPS, SERVICE_S, DURATION_S = 9.5, 0.1, 1000.0
SETS, REPLICATIONS = 800, 20
TOLERANCE = 0.03


def replications(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(arrival times, TTFT) of every request of each replication, from an empty system."""
    scenario = mmc_scenario(RATE_RPS, SERVICE_S, {"m": 1}, DURATION_S, 0, seed)
    out = []
    for r in range(REPLICATIONS):
        req = generate(scenario.workload, DURATION_S, seed, r)
        out.append((req.arrival_s, simulate_requests(scenario, "m", r, req).ttft_s))
    return out


@pytest.mark.slow
def test_truncating_at_the_detected_warmup_leaves_the_steady_state_mean() -> None:
    truth = sojourn_mean_s(1, RATE_RPS, SERVICE_S)
    truncated, untruncated, cuts = [], [], []
    for seed in range(SETS):
        reps = replications(seed)
        cut = detect_warmup([TimeProfile.of(a, t, DURATION_S) for a, t in reps]).detected_s
        cuts.append(cut)
        truncated.append(np.mean([t[a >= cut].mean() for a, t in reps]))
        untruncated.append(np.mean([t.mean() for _, t in reps]))
    bias = float(np.mean(truncated)) / truth - 1
    se = float(np.std(truncated, ddof=1)) / np.sqrt(SETS) / truth
    raw = float(np.mean(untruncated)) / truth - 1
    print(
        f"\nwarm-up cut median {np.median(cuts):.0f} s (0 s in {np.mean(np.equal(cuts, 0)):.1%});"
        f" mean TTFT bias after the cut {bias:+.2%} +- {se:.2%}, without it {raw:+.2%}"
    )
    assert -TOLERANCE <= bias <= TOLERANCE, (bias, se, raw)
