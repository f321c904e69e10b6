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
    # positive: x_r / pooled = 0.4, 0.8, 1.2: sd 0.4, se 0.4/sqrt(3); t(2, 0.975) = 4.302653;
    # the interval is pooled * exp(± t se) (the log scale: above 0, longer upwards)
    iv = sectioning_interval(2.5, [1.0, 2.0, 3.0], 0.95)
    h = 4.302652729911275 * 0.4 / math.sqrt(3)
    assert iv.estimate == 2.5 and iv.n == 3
    assert iv.low == pytest.approx(2.5 * math.exp(-h)) and iv.high == pytest.approx(
        2.5 * math.exp(h)
    )
    assert iv.low > 0 and iv.high - 2.5 > 2.5 - iv.low
    # a value of 0 (not positive): pooled ± t·sd/sqrt(R), sd 1.5
    z = sectioning_interval(1.5, [0.0, 1.5, 3.0], 0.95)
    hz = 4.302652729911275 * 1.5 / math.sqrt(3)
    assert z.low == pytest.approx(1.5 - hz) and z.high == pytest.approx(1.5 + hz)
    assert mean_interval([1.0, 2.0, 3.0]).estimate == 2.0


def test_quantile_interval_is_woodruff_on_the_pooled_sample() -> None:
    """By hand with numpy on the raw values: the share of each replication at or below the pooled
    median, its ratio-estimate standard error over replications, and the pooled quantiles at
    0.5 ± t·se (the sketch's 0.05% bins aside)."""
    raw = [np.arange(1, 101) * (1 + 0.1 * r) + 7 * r for r in range(4)]
    iv = quantile_interval([LogHistogram.of(x) for x in raw], 0.5)
    pooled = np.concatenate(raw)
    centre = np.quantile(pooled, 0.5, method="lower")
    assert iv.estimate == pytest.approx(centre, rel=1e-3)
    n = np.array([x.size for x in raw], dtype=float)
    share = np.array([(x <= centre).sum() for x in raw]) / n
    resid = (share - share @ n / n.sum()) * n / n.mean()
    t_se = stats.t.ppf(0.975, 3) * np.std(resid, ddof=1) / 2
    low, high = np.quantile(pooled, [0.5 - t_se, 0.5 + t_se], method="lower")
    assert (iv.low, iv.high) == (pytest.approx(low, rel=2e-3), pytest.approx(high, rel=2e-3))
    assert iv.low < iv.estimate < iv.high


def test_paired_t_matches_scipy_where_values_can_be_zero() -> None:
    a = np.array([0.0, 1.2, 0.9, 1.1, 1.3])
    b = a + np.array([0.3, 0.1, 0.25, 0.2, 0.4])
    c = paired_mean_comparison(a, b)
    ref = stats.ttest_rel(b, a)
    assert c.p_value == pytest.approx(ref.pvalue)
    ci = ref.confidence_interval(0.95)
    assert (c.diff_low, c.diff_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert c.rel_diff == pytest.approx(b.mean() / a.mean() - 1)
    assert c.rel_low == pytest.approx(ci.low / a.mean())


def test_positive_values_are_tested_on_the_log_ratio_by_hand() -> None:
    a = np.array([1.0, 1.2, 0.9, 1.1, 1.3])
    b = a * np.array([1.3, 1.1, 1.25, 1.2, 1.4])
    c = paired_mean_comparison(a, b)
    # one t-test of log(mean b / mean a) with se = sd(b_r/mean b - a_r/mean a)/sqrt(5)
    lr = math.log(b.mean() / a.mean())
    se = np.std(b / b.mean() - a / a.mean(), ddof=1) / math.sqrt(5)
    t = stats.t.ppf(0.975, 4)
    assert c.p_value == pytest.approx(2 * stats.t.sf(abs(lr / se), 4))
    assert (c.rel_low, c.rel_high) == (
        pytest.approx(math.expm1(lr - t * se)),
        pytest.approx(math.expm1(lr + t * se)),
    )
    # the absolute interval inverts the same test: at each end d, the log-ratio t of b - d
    # against a is -+t
    for end, sign in ((c.diff_low, 1), (c.diff_high, -1)):
        x = b.mean() - end
        z = (b - end) / x - a / a.mean()
        t_end = math.log(x / a.mean()) / (np.std(z, ddof=1) / math.sqrt(5))
        assert t_end == pytest.approx(sign * t, rel=1e-6)
    assert c.rel_low < c.rel_diff < c.rel_high


positive_pairs = st.integers(2, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.floats(1e-3, 1e3), min_size=n, max_size=n),
        st.lists(st.floats(0.2, 5.0), min_size=n, max_size=n),
        st.lists(st.floats(-2.0, 2.0), min_size=n, max_size=n),
        st.sampled_from([0.8, 0.9, 0.95, 0.99]),
        st.booleans(),
    )
)


@settings(max_examples=600, deadline=None)
@given(positive_pairs)
def test_p_value_and_both_intervals_agree_on_excluding_zero(case) -> None:
    """For any paired sample: p < alpha exactly when the absolute interval excludes 0, and
    exactly when the relative one does (ratios, or shifted values that may cross 0)."""
    base, factor, shift, confidence, shifted = case
    a = np.array(base)
    b = a * np.array(factor)
    if shifted:  # values of any sign: the difference scale
        a, b = a + np.array(shift), b + np.array(shift)
    c = paired_mean_comparison(a, b, confidence)
    alpha = 1 - confidence
    if abs(c.p_value - alpha) < 1e-9:
        return  # on the boundary rounding decides either way
    rejected = c.p_value < alpha
    assert rejected == (c.diff_low > 0 or c.diff_high < 0)
    if math.isfinite(c.rel_low) and math.isfinite(c.rel_high):
        assert rejected == (c.rel_low > 0 or c.rel_high < 0)
    assert c.diff_low <= c.diff <= c.diff_high
    if np.all(a > 0) and np.all(b > 0):
        assert c.rel_low >= -1  # a ratio interval stays >= 0 (-1 only where exp underflows)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(2, 12),
    st.integers(0, 2**32 - 1),
    st.floats(0.5, 2.0),
    st.sampled_from([0.5, 0.9, 0.99]),
    st.sampled_from([0.9, 0.95, 0.99]),
)
def test_quantile_comparison_p_value_and_intervals_agree(
    r: int, seed: int, scale: float, q: float, confidence: float
) -> None:
    """The same rule for pooled quantiles, whose paired test runs on the replications'
    Woodruff pseudo-values: p < alpha exactly when either interval excludes 0."""
    rng = np.random.default_rng(seed)
    base = [rng.lognormal(0.0, 1.0, int(rng.integers(20, 200))) for _ in range(r)]
    other = [x * scale * rng.lognormal(0.0, 0.2) for x in base]  # paired: same requests
    c = paired_quantile_comparison(
        [LogHistogram.of(x) for x in base], [LogHistogram.of(x) for x in other], q, confidence
    )
    alpha = 1 - confidence
    if abs(c.p_value - alpha) < 1e-9:
        return
    rejected = c.p_value < alpha
    assert rejected == (c.diff_low > 0 or c.diff_high < 0)
    if math.isfinite(c.rel_low) and math.isfinite(c.rel_high):
        assert rejected == (c.rel_low > 0 or c.rel_high < 0)
    assert c.diff_low <= c.diff <= c.diff_high


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


def _shifted_t_by_definition(delta: float, b0: float, o0: float, a: np.ndarray, b: np.ndarray):
    """The log-ratio t of `b - delta` against `a`, written from its definition: log of the
    pooled ratio over the replications' spread of o_r/O - b_r/B (np.std, ddof 1)."""
    x = o0 - delta
    terms = (b - delta) / x - a / b0
    return math.log(x / b0) / (np.std(terms, ddof=1) / math.sqrt(a.size))


@settings(max_examples=300, deadline=None)
@given(
    st.integers(2, 30),
    st.integers(0, 2**32 - 1),
    st.sampled_from([0.0, 0.9, 0.999]),
    st.sampled_from([1.0, 1.02, 1.5, 0.4]),
    st.sampled_from([0.9, 0.95, 0.99]),
)
def test_absolute_interval_edges_are_where_the_shifted_test_reaches_t(
    r: int, seed: int, rho: float, ratio: float, confidence: float
) -> None:
    """The absolute interval inverts the log-ratio test: the test of "the difference is delta"
    (computed here from its definition) crosses +t at the lower edge and -t at the upper edge
    (or the upper edge is where the shifted other reaches 0), on correlated (common random
    numbers) and independent pairs. The edges are found to 1e-10 of the values' scale, so the
    crossing lies within 1e-9 of scale on either side. An edge at 0 is the guard that keeps the
    interval and the p-value agreeing where the test is not monotone in delta (tested above)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(r)
    w = rho * z + math.sqrt(1 - rho * rho) * rng.standard_normal(r)
    a, b = np.exp(0.2 * z), ratio * np.exp(0.2 * w)
    c = paired_mean_comparison(a, b, confidence)
    t = stats.t.ppf(0.5 + confidence / 2, r - 1)
    b0, o0 = float(a.mean()), float(b.mean())
    eps = 1e-9 * max(b0, o0)
    slack = 1e-9 * t  # where the test is flat, rounding decides the last digits
    if c.diff_low < c.diff - eps and abs(c.diff_low) > math.ulp(0.0):
        assert _shifted_t_by_definition(c.diff_low - eps, b0, o0, a, b) >= t - slack
        assert _shifted_t_by_definition(c.diff_low + eps, b0, o0, a, b) <= t + slack
    if c.diff + eps < c.diff_high < o0 - eps and abs(c.diff_high) > math.ulp(0.0):
        assert _shifted_t_by_definition(c.diff_high - eps, b0, o0, a, b) >= -t - slack
        assert _shifted_t_by_definition(c.diff_high + eps, b0, o0, a, b) <= -t + slack
