"""Confidence intervals and paired tests whose unit of variation is the replication.

Requests inside one run are strongly correlated (a queue that is long now is long a second later),
so treating them as independent gives intervals far too narrow. Replications are independent, so
every interval here takes its spread from the replications.

Quantiles (P50/P90/P99): the point estimate is the pooled quantile of all measured requests of all
R replications (a short run's own P99 is biased low; the pooled one, from R times more requests,
about R times less). Its interval is sectioning on the CDF scale, Woodruff's (1952) interval for
a quantile under cluster sampling, the replications being the clusters: each replication's share
of requests at or below the pooled quantile, F_r, gives the standard error of the pooled share
p (a ratio estimate over replications, t on R - 1 degrees of freedom), and the interval is the
pooled quantile function at p ± t·se. Sectioning the per-replication quantiles themselves
(pooled ± t·sd(x_r)/sqrt(R)) undercovers tail quantiles on bursty systems: a run's own P99 rests on
its ~5 slowest requests, whose spread understates the pooled estimate's (studies/default.yaml,
disaggregated P99: 0.89 against 0.94; docs/statistics.md). The paired tests use the same
linearisation as per-replication values, pooled - (F_r - p)/f with the density f read off the
Woodruff interval (`QuantileSection.pseudo`).

Means and other per-replication values: pooled ± t·sd/sqrt(R), on the log scale for positive
values (`sectioning_interval`), so it never reaches below 0.

Paired comparisons (same replications, common random numbers) are one test per comparison, on one
scale: for positive values the log ratio log(other/baseline), with the same sectioning standard
error over replications and a t p-value on R-1 degrees of freedom; its interval is reported as a
relative difference (expm1 of the ends); the absolute interval inverts the same test (every shift
of `other` it does not reject), so the p-value, the relative interval and the absolute interval
always agree on whether 0 is excluded, and each covers its own quantity. Values that
can be 0 or negative use a paired t on the difference instead (relative = difference / |baseline|).

Degenerate spread: when every per-replication difference is identical (e.g. the same architecture
twice), the interval collapses to the point; a zero difference then has p = 1 and is never
significant, a non-zero one has p = 0. Nothing here returns NaN for finite inputs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from distsim.stats.sketch import LogHistogram, per_replication_quantiles

AdjustMethod = Literal["holm", "bonferroni", "bh", "none"]
_STATSMODELS_METHOD = {"holm": "holm", "bonferroni": "bonferroni", "bh": "fdr_bh"}


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided interval from R replications."""

    estimate: float
    low: float
    high: float
    n: int  # replications

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0


@dataclass(frozen=True)
class Comparison:
    """Other minus baseline over the same replications."""

    baseline_estimate: float
    estimate: float
    diff: float
    diff_low: float
    diff_high: float
    rel_diff: float
    rel_low: float
    rel_high: float
    p_value: float
    n: int


@functools.lru_cache(maxsize=4096)  # a sweep asks for the same few (n, confidence) per cell
def _t_factor(n: int, confidence: float) -> float:
    # scipy.stats.t.ppf evaluates stdtrit; importing scipy.stats alone costs ~1 s per process
    from scipy.special import stdtrit  # on use: Ray workers load this module but never call it

    return float(stdtrit(n - 1, 0.5 + confidence / 2.0))


def _check(values: np.ndarray, confidence: float) -> None:
    if values.ndim != 1 or values.size < 2:
        raise ValueError("an interval needs the values of at least 2 replications")
    if not np.all(np.isfinite(values)):
        raise ValueError("per-replication values must be finite")
    if not 0 < confidence < 1:
        raise ValueError("confidence must lie strictly between 0 and 1")


_add = np.add.reduce  # numpy's (pairwise) summation, as np.std uses


def _spread_se(values: np.ndarray) -> float:
    """Standard error of a centre from the replications' spread; exactly 0 for equal values.

    `np.std(values, ddof=1) / sqrt(n)` written out with the same floating-point operations in the
    same order (so the same bits): the paired intervals call it ~50 times per comparison, where
    np.std's dispatch cost more than the arithmetic."""
    if (values == values[0]).all():
        return 0.0
    n = values.size
    d = values - _add(values) / n
    return math.sqrt(_add(d * d) / (n - 1)) / math.sqrt(n)


def sectioning_interval(
    pooled: float, per_replication: Sequence[float] | np.ndarray, confidence: float = 0.95
) -> Interval:
    """The interval of a pooled estimate from the spread of its per-replication estimates.

    Positive values (latencies): on the log scale, pooled x exp(± t·sd(x_r / pooled)/sqrt(R))
    (the delta method: sd(x_r / pooled) is the standard error of log(pooled) times sqrt(R)), so
    the interval stays above 0 and reaches further up than down, as a right-skewed estimate
    needs. Otherwise pooled ± t·sd(x_r)/sqrt(R). The paired tests use the same construction
    (`paired_comparison`); docs/statistics.md has the coverage of both on M/M/c and on
    studies/default.yaml.
    """
    values = np.asarray(per_replication, dtype=np.float64)
    _check(values, confidence)
    t = _t_factor(values.size, confidence)
    p = float(pooled)
    if p > 0 and bool(np.all(values > 0)):
        h = t * _spread_se(values / p)
        return Interval(p, float(p * np.exp(-h)), float(p * np.exp(h)), int(values.size))
    h = t * _spread_se(values)
    return Interval(p, float(p - h), float(p + h), int(values.size))


def mean_interval(
    per_replication: Sequence[float] | np.ndarray, confidence: float = 0.95
) -> Interval:
    """Student-t interval of the average of independent per-replication values."""
    values = np.asarray(per_replication, dtype=np.float64)
    _check(values, confidence)
    return sectioning_interval(float(values.mean()), values, confidence)


@dataclass(frozen=True)
class QuantileSection:
    """The pooled q-quantile of R replications, its Woodruff interval and what it is built from.

    `pseudo`: per-replication values whose mean is `pooled` and whose spread over sqrt(R) is the
    pooled estimate's standard error (the Bahadur linearisation pooled - (F_r - p)/f, f the
    density the interval implies), for paired tests. `tail_episodes`: how many independent
    events beyond the quantile the study's R replications hold, min(q, 1-q)^2 max(q, 1-q) / se^2
    (the exceedance count divided by the design effect: slow requests that come in bursts count
    once per burst); `inf` when the replications agree exactly.
    """

    pooled: float
    low: float
    high: float
    pseudo: np.ndarray
    tail_episodes: float
    n: int


def quantile_section(
    sketches: Sequence[LogHistogram],
    q: float,
    confidence: float = 0.95,
    merged: LogHistogram | None = None,
) -> QuantileSection:
    """Woodruff interval of the pooled q-quantile over replications (see the module docstring).

    `merged`: the sketches already merged, for callers that keep it incrementally."""
    if len(sketches) < 2:
        raise ValueError("an interval needs the values of at least 2 replications")
    if not 0 < confidence < 1:
        raise ValueError("confidence must lie strictly between 0 and 1")
    merged = LogHistogram.merge(sketches) if merged is None else merged
    r = len(sketches)
    t = _t_factor(r, confidence)
    pooled = float(merged.quantile(q))
    n = np.array([s.n for s in sketches], dtype=np.float64)
    at_most = np.array([s.count_at_most(pooled) for s in sketches], dtype=np.float64)
    share = at_most.sum() / n.sum()
    resid = (at_most - share * n) / n.mean()  # each replication's ratio-estimate residual
    se = _spread_se(resid)
    if se == 0.0:
        full = np.full(r, pooled)
        return QuantileSection(pooled, pooled, pooled, full, math.inf, r)
    levels = np.clip([q - t * se, q + t * se], 0.0, 1.0)
    low, high = (float(v) for v in merged.quantile(levels))
    low, high = min(low, pooled), max(high, pooled)
    if high > low:
        pseudo = pooled - resid * (high - low) / float(levels[1] - levels[0])
    else:  # the whole band sits in one sketch bin: the per-replication quantiles' spread
        pseudo = per_replication_quantiles(sketches, q)
    tail = min(q, 1.0 - q)
    return QuantileSection(pooled, low, high, pseudo, tail * tail * (1.0 - tail) / se**2, r)


def quantile_interval(
    sketches: Sequence[LogHistogram], q: float, confidence: float = 0.95
) -> Interval:
    """Pooled q-quantile of the replications' sketches, with its Woodruff interval."""
    sec = quantile_section(sketches, q, confidence)
    return Interval(sec.pooled, sec.low, sec.high, sec.n)


def _p_value(centre: float, se: float, n: int) -> float:
    if se == 0.0:
        return 1.0 if centre == 0.0 else 0.0
    from scipy.special import stdtr  # what scipy.stats.t.sf evaluates, without its dispatch

    return float(2.0 * stdtr(n - 1, -(abs(centre) / se)))


def _linearised_log_ratio(
    baseline_pooled: float, other_pooled: float, base: np.ndarray, other: np.ndarray
) -> np.ndarray:
    """Per-replication terms whose spread measures the error of log(other/baseline).

    The delta method on log(O) - log(B): replication r contributes o_r/O - b_r/B (its share of
    each side, relative to the pooled estimate). For a mean this is exactly the linearisation of
    the log of a ratio of averages; for pooled quantiles it is sectioning on that scale.
    """
    return other / other_pooled - base / baseline_pooled


class _ShiftedLogT:
    """The log-ratio t statistic of `other - delta` against `base` (the test of "the difference
    is delta", on the same scale as the test of 0: `_linearised_log_ratio` of the shifted other,
    its spread over replications), as a function of delta in O(1) per evaluation.

    The test inversion evaluates it ~40 times per comparison. Its terms are, up to a constant,
    (o_r - mean(o))/x - (c_r - mean(c)) with x = o0 - delta and c_r = b_r/b0, so their sum of
    squares is Soo (1/x - s*)^2 + rest in 1/x, with s* = Soc/Soo and rest the sum of squares of
    c - s* a: two non-negative terms (no cancellation), computed from the replications once."""

    def __init__(self, b0: float, o0: float, base: np.ndarray, other: np.ndarray) -> None:
        n = base.size
        a = other - _add(other) / n
        c = base / b0
        c = c - _add(c) / n
        self.soo = float(_add(a * a))
        self.s_star = float(_add(a * c)) / self.soo if self.soo > 0.0 else 0.0
        r = c - self.s_star * a
        self.rest = float(_add(r * r))
        self.b0, self.o0, self.n = b0, o0, n

    def __call__(self, delta: float) -> float:
        x = self.o0 - delta
        if x <= 0:
            return -math.inf
        s = 1.0 / x - self.s_star
        se = math.sqrt((self.soo * s * s + self.rest) / (self.n - 1)) / math.sqrt(self.n)
        centre = math.log(x / self.b0)
        if se == 0.0:
            return 0.0 if centre == 0.0 else math.copysign(math.inf, centre)
        return centre / se


def _bisect(
    inside_left: Callable[[float], bool], left: float, right: float, tol: float = 0.0
) -> float:
    """The point between `left` and `right` where `inside_left` changes from True to False, to
    within `tol` (bisection: robust to the infinite t of a spread-free shift)."""
    for _ in range(100):
        mid = 0.5 * (left + right)
        if mid in (left, right) or abs(right - left) <= tol:
            break
        left, right = (mid, right) if inside_left(mid) else (left, mid)
    return 0.5 * (left + right)


def _difference_interval(
    b0: float, o0: float, base: np.ndarray, other: np.ndarray, t: float, rejected: bool
) -> tuple[float, float]:
    """The absolute interval of other - baseline: every shift delta that the log-ratio test of
    `other - delta` against `baseline` does not reject (test inversion). It is the same test as
    the p-value's at delta = 0, so it excludes 0 exactly when that test rejects, and it covers the
    difference itself (multiplying the ratio interval by the estimated baseline would ignore the
    baseline's own error)."""
    diff = o0 - b0
    if diff == 0.0 and np.array_equal(base, other):  # the same results: no difference at all
        return 0.0, 0.0
    if np.all(base == base[0]) and np.all(other == other[0]):  # no spread on either side
        return diff, diff
    step = max(abs(diff), 1e-12 * max(abs(b0), abs(o0)), 1e-300)
    f = _ShiftedLogT(b0, o0, base, other)
    # the edges to 1e-10 of the values' scale: far below any reported digit, and half the
    # evaluations of bisecting to the last bit
    tol = 1e-10 * max(abs(b0), abs(o0), abs(diff))
    if f(diff - step) == f(diff) == f(diff + min(step, o0) / 2):  # no spread at all
        return diff, diff
    # below: t rises as delta falls; find where it reaches +t
    lo_edge, d = diff, step
    for _ in range(200):
        if f(diff - d) >= t:
            break
        lo_edge, d = diff - d, d * 2.0
    lo = _bisect(lambda x: f(x) >= t, diff - d, lo_edge, tol)
    # above: t falls towards -t as delta rises to o0 (where the shifted other reaches 0); past
    # the first crossing or up to o0 itself when it never gets there
    hi, prev, frac = o0, diff, 0.5
    for k in range(1, 200):
        d = diff + (o0 - diff) * (1.0 - frac**k)
        if f(d) <= -t:
            hi = _bisect(lambda x: f(x) > -t, prev, d, tol)
            break
        prev = d
    # the same test at 0 decides: guard the last bit of rounding
    if rejected and lo <= 0.0 <= hi:
        lo, hi = (max(lo, math.ulp(0.0)), hi) if diff > 0 else (lo, min(hi, -math.ulp(0.0)))
    if not rejected and not (lo <= 0.0 <= hi):
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    return float(min(lo, diff)), float(max(hi, diff))


def paired_comparison(
    baseline_pooled: float,
    other_pooled: float,
    baseline_reps: Sequence[float] | np.ndarray,
    other_reps: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
) -> Comparison:
    """One paired test per comparison; the absolute and relative intervals are the same
    interval on two scales, so `p_value < 1 - confidence` exactly when either excludes 0.

    Positive values (latencies, TPOT, goodput): the test is on the log ratio
    log(other/baseline) with a sectioning standard error over replications
    (`_linearised_log_ratio`); the relative interval is expm1 of its ends and the absolute one
    baseline x that, so neither can imply a negative latency. Otherwise (a value <= 0, e.g. a
    queue wait of 0): a paired t on the difference, and the relative interval is the absolute
    one over |baseline| (infinite with a zero baseline).
    """
    base = np.asarray(baseline_reps, dtype=np.float64)
    other = np.asarray(other_reps, dtype=np.float64)
    _check(base, confidence)
    _check(other, confidence)
    if base.shape != other.shape:
        raise ValueError("paired comparison needs the same replications on both sides")
    n = int(base.size)
    t = _t_factor(n, confidence)
    diff = float(other_pooled - baseline_pooled)
    b0 = float(baseline_pooled)
    positive = b0 > 0 and other_pooled > 0 and bool(np.all(base > 0) and np.all(other > 0))
    if positive:
        centre = float(np.log(other_pooled / baseline_pooled))
        se = _spread_se(_linearised_log_ratio(b0, float(other_pooled), base, other))
        if centre == 0.0 and diff != 0.0:  # O and B differ below log's resolution
            centre = float(np.log1p(diff / b0))
        p = _p_value(centre, se, n)
        rel = float(np.expm1(centre))
        rel_lo, rel_hi = float(np.expm1(centre - t * se)), float(np.expm1(centre + t * se))
        lo, hi = _difference_interval(b0, float(other_pooled), base, other, t, p < 1 - confidence)
    else:
        se = _spread_se(other - base)
        p = _p_value(diff, se, n)
        lo, hi = diff - t * se, diff + t * se
        if b0 != 0:
            scale = abs(b0)
            rel, rel_lo, rel_hi = diff / scale, lo / scale, hi / scale
        elif diff == 0.0 and se == 0.0:
            rel = rel_lo = rel_hi = 0.0
        else:  # a zero baseline has no finite relative size
            rel = float(np.copysign(np.inf, diff)) if diff != 0 else float("nan")
            rel_lo, rel_hi = -np.inf, np.inf
    return Comparison(
        baseline_estimate=b0,
        estimate=float(other_pooled),
        diff=diff,
        diff_low=float(lo),
        diff_high=float(hi),
        rel_diff=rel,
        rel_low=rel_lo,
        rel_high=rel_hi,
        p_value=p,
        n=n,
    )


def paired_mean_comparison(
    baseline_reps: Sequence[float] | np.ndarray,
    other_reps: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
) -> Comparison:
    """Paired t on per-replication values (e.g. each replication's mean TTFT)."""
    base = np.asarray(baseline_reps, dtype=np.float64)
    other = np.asarray(other_reps, dtype=np.float64)
    return paired_comparison(float(base.mean()), float(other.mean()), base, other, confidence)


def paired_quantile_comparison(
    baseline: Sequence[LogHistogram],
    other: Sequence[LogHistogram],
    q: float,
    confidence: float = 0.95,
) -> Comparison:
    """Pooled q-quantile difference over the same replications (index i pairs with index i)."""
    if len(baseline) != len(other):
        raise ValueError("paired comparison needs the same replications on both sides")
    b, o = quantile_section(baseline, q, confidence), quantile_section(other, q, confidence)
    return paired_sections_comparison(b, o, confidence)


def paired_sections_comparison(
    baseline: QuantileSection, other: QuantileSection, confidence: float = 0.95
) -> Comparison:
    """`paired_quantile_comparison` from the sections of both sides (same replications, same
    level and confidence)."""
    if baseline.n != other.n:
        raise ValueError("paired comparison needs the same replications on both sides")
    return paired_comparison(
        baseline.pooled, other.pooled, baseline.pseudo, other.pseudo, confidence
    )


def adjust_p_values(
    p_values: Sequence[float] | np.ndarray, method: AdjustMethod = "holm"
) -> np.ndarray:
    """Family-wise (holm, bonferroni) or false-discovery-rate (bh) adjusted p-values.

    NaN entries (comparisons left out of testing, e.g. unstable scenarios) stay NaN and do not
    count towards the family size. Uses statsmodels' `multipletests`.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    tested = np.isfinite(p)
    if method == "none":
        out[tested] = p[tested]
        return out
    if method not in _STATSMODELS_METHOD:
        raise ValueError(f"unknown multiple-comparison method {method!r}")
    if tested.any():
        from statsmodels.stats.multitest import multipletests

        out[tested] = multipletests(p[tested], method=_STATSMODELS_METHOD[method])[1]
    return out
