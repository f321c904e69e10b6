"""The quantile sketch, replication-level intervals, paired tests and p-value adjustment,
against hand-computed values and exact sample quantiles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from distsim.stats.intervals import (
    adjust_p_values,
    mean_interval,
    paired_comparison,
    paired_mean_comparison,
    paired_quantile_comparison,
    quantile_interval,
    sectioning_interval,
)
from distsim.stats.sketch import RELATIVE_ACCURACY, LogHistogram

# ---------------------------------------------------------------------------- sketch

samples = st.lists(
    st.one_of(st.just(0.0), st.floats(1e-6, 1e4, allow_nan=False)), min_size=1, max_size=300
)


@settings(max_examples=200, deadline=None)
@given(samples, st.floats(0, 1))
def test_sketch_quantile_within_relative_accuracy(values: list[float], q: float) -> None:
    x = np.array(values)
    exact = float(np.quantile(x, q, method="lower"))
    got = LogHistogram.of(x).quantile(q)
    # the bound holds up to floating-point rounding of the bin edges
    assert abs(got - exact) <= RELATIVE_ACCURACY * exact * (1 + 1e-9)


@settings(max_examples=100, deadline=None)
@given(samples, samples)
def test_merge_equals_sketch_of_concatenation(a: list[float], b: list[float]) -> None:
    merged = LogHistogram.merge([LogHistogram.of(np.array(a)), LogHistogram.of(np.array(b))])
    whole = LogHistogram.of(np.array(a + b))
    assert np.array_equal(merged.index, whole.index)
    assert np.array_equal(merged.count, whole.count)
    assert merged.zero_count == whole.zero_count and merged.n == len(a) + len(b)
    assert merged.min == whole.min and merged.max == whole.max
    assert math.isclose(merged.sum, whole.sum, rel_tol=1e-12, abs_tol=1e-12)


def test_sketch_size_is_bounded_by_value_range_not_count() -> None:
    rng = np.random.default_rng(0)
    small = LogHistogram.of(rng.uniform(0.01, 10.0, 1_000))
    large = LogHistogram.of(rng.uniform(0.01, 10.0, 2_000_000))
    bound = math.log(10.0 / 0.01) / math.log((1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)) + 2
    assert large.index.size <= bound
    assert small.index.size < large.index.size <= bound


def test_sketch_round_trip_and_empty() -> None:
    s = LogHistogram.of(np.array([0.0, 0.5, 2.0, 2.0]))
    assert LogHistogram.from_dict(s.to_dict()).quantile(0.5) == s.quantile(0.5)
    assert s.quantile(0.0) == 0.0 and s.quantile(1.0) == 2.0 and s.mean == 4.5 / 4
    assert math.isnan(LogHistogram.empty().quantile(0.5))
    with pytest.raises(ValueError):
        LogHistogram.of(np.array([-1.0]))


# ---------------------------------------------------------------------------- intervals


def test_sectioning_by_hand() -> None:
    # per-replication values 1, 2, 3: sd 1, se 1/sqrt(3); t(2, 0.975) = 4.302653
    iv = sectioning_interval(2.5, [1.0, 2.0, 3.0], 0.95)
    h = 4.302652729911275 / math.sqrt(3)
    assert iv.estimate == 2.5 and iv.n == 3
    assert iv.low == pytest.approx(2.5 - h) and iv.high == pytest.approx(2.5 + h)
    assert mean_interval([1.0, 2.0, 3.0]).estimate == 2.0


def test_quantile_interval_centres_on_pooled_quantile() -> None:
    reps = [LogHistogram.of(np.arange(1, 101) * (1 + r)) for r in range(4)]
    iv = quantile_interval(reps, 0.5)
    pooled = np.concatenate([np.arange(1, 101) * (1 + r) for r in range(4)])
    assert iv.estimate == pytest.approx(np.quantile(pooled, 0.5, method="lower"), rel=1e-3)
    per_rep = [np.quantile(np.arange(1, 101) * (1 + r), 0.5, method="lower") for r in range(4)]
    expected_h = stats.t.ppf(0.975, 3) * np.std(per_rep, ddof=1) / 2
    assert iv.half_width == pytest.approx(expected_h, rel=2e-3)


def test_paired_t_matches_scipy() -> None:
    a = np.array([1.0, 1.2, 0.9, 1.1, 1.3])
    b = a + np.array([0.3, 0.1, 0.25, 0.2, 0.4])
    c = paired_mean_comparison(a, b)
    ref = stats.ttest_rel(b, a)
    assert c.p_value == pytest.approx(ref.pvalue)
    ci = ref.confidence_interval(0.95)
    assert (c.diff_low, c.diff_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert c.rel_diff == pytest.approx(b.mean() / a.mean() - 1)
    assert c.rel_low < c.rel_diff < c.rel_high


def test_identical_results_are_no_difference() -> None:
    reps = [LogHistogram.of(np.array([0.1, 0.2, 0.3 + r])) for r in range(3)]
    for c in (
        paired_quantile_comparison(reps, reps, 0.99),
        paired_mean_comparison([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]),
        paired_mean_comparison([0.0, 0.0], [0.0, 0.0]),
    ):
        assert c.diff == 0 and c.diff_low == 0 and c.diff_high == 0
        assert c.rel_diff == 0 and c.rel_low == 0 and c.rel_high == 0
        assert c.p_value == 1.0


def test_constant_nonzero_difference_and_zero_baseline_are_finite_or_signed() -> None:
    c = paired_comparison(1.0, 2.0, [1.0, 1.0, 1.0], [2.0, 2.0, 2.0])
    assert c.p_value == 0.0 and c.diff_low == c.diff_high == 1.0 and c.rel_diff == 1.0
    z = paired_comparison(0.0, 0.5, [0.0, 0.0], [0.4, 0.6])
    assert z.rel_diff == math.inf and not math.isnan(z.p_value)


def test_needs_two_paired_replications() -> None:
    with pytest.raises(ValueError):
        sectioning_interval(1.0, [1.0])
    with pytest.raises(ValueError):
        paired_comparison(1.0, 1.0, [1.0, 2.0], [1.0, 2.0, 3.0])


# ---------------------------------------------------------------------------- adjustment


def test_holm_and_bonferroni_by_hand() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # Bonferroni: p * 4, capped at 1.
    assert adjust_p_values(p, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 0.02])
    # Holm: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04,
    # then running maximum -> 0.02, 0.03, 0.06, 0.06; back in input order:
    assert adjust_p_values(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # Benjamini-Hochberg: p * 4 / rank -> 0.02, 0.02, 0.04, 0.04, running minimum from the top.
    assert adjust_p_values(p, "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert adjust_p_values(p, "none") == pytest.approx(p)


def test_adjustment_caps_at_one_and_skips_untested() -> None:
    out = adjust_p_values([0.5, float("nan"), 0.6], "bonferroni")
    assert out[0] == 1.0 and out[2] == 1.0 and math.isnan(out[1])
    # the NaN does not count towards the family: two tests, not three
    assert adjust_p_values([0.02, float("nan"), 0.5], "bonferroni")[0] == pytest.approx(0.04)
    with pytest.raises(ValueError):
        adjust_p_values([0.1], "sidak")  # type: ignore[arg-type]
