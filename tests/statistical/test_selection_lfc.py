"""KN as implemented meets its probability of correct selection in the least-favourable
configuration of its proof: normal outputs, every other candidate exactly delta behind the best,
common random numbers (positively correlated outputs), observed one replication at a time."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from distsim.stats import selection as rs


@pytest.mark.slow
def test_probability_of_correct_selection_in_the_least_favourable_configuration():
    """2,000 selections among 5 candidates at confidence 0.9 (KN is conservative; its bound is
    met with room). If P(CS) were exactly 0.9, fewer than `floor` correct selections happen with
    probability <= 0.001: the false-failure rate of this test."""
    rng = np.random.default_rng(20261129)
    k, n, conf, rho = 5, 2000, 0.9, 0.05
    delta = np.log1p(rho)
    s = rs.Settings(goal="maximize", indifference=rho, confidence=conf, n0=10, stage=1,
                    max_replications=400)  # fmt: skip
    correct = 0
    for _ in range(n):
        common = rng.standard_normal(400) * delta  # the shared part (common random numbers)
        z = {f"c{i}": common + delta * rng.standard_normal(400) - (delta if i else 0.0)
             for i in range(k)}  # fmt: skip
        values = {a: np.exp(v) for a, v in z.items()}  # maximise X = exp(Z): scores are Z
        d = rs.replay(values, {a: {} for a in values}, s)
        assert d.done and not d.capped
        correct += d.contenders == ["c0"]
    print(f"correct selections: {correct}/{n}")
    floor = int(stats.binom.ppf(0.001, n, conf))
    assert correct >= floor, f"{correct}/{n}"
