"""Confidence intervals and paired tests whose unit of variation is the replication.

Requests inside one run are strongly correlated (a queue that is long now is long a second later),
so treating them as independent gives intervals far too narrow. Replications are independent, so
every interval here takes its spread from the replications.

Quantiles (P50/P90/P99) use *sectioning* (Asmussen & Glynn, Stochastic Simulation, 2007, §III.5):
the point estimate is the pooled quantile of all measured requests of all R replications, and the
interval is

    pooled ± t(R-1, 1 - alpha/2) · sd(per-replication quantiles) / sqrt(R).

Why not the plain average of per-replication quantiles: a quantile estimated from a short run is
biased (P99 of a short run is biased low, more so near saturation); the pooled quantile uses R
times more requests, so its bias is about R times smaller, while the spread of the per-replication
quantiles still measures the pooled estimator's sampling error (both are asymptotically the average
of the same per-replication influence terms).

Paired comparisons (same replications, common random numbers) apply the same construction to the
per-replication differences: pooled difference ± t·sd(d_r)/sqrt(R), with a t-test p-value on R-1
degrees of freedom. For a mean, pooled = average of the per-replication means and this is exactly
the paired t-test. The relative difference other/baseline - 1 gets its interval by sectioning on
log ratios (scale-free and symmetric), or, when a value is not positive, from the difference
interval divided by the baseline estimate.

Degenerate spread: when every per-replication difference is identical (e.g. the same architecture
twice), the interval collapses to the point; a zero difference then has p = 1 and is never
significant, a non-zero one has p = 0. Nothing here returns NaN for finite inputs.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from distsim.stats.sketch import LogHistogram, per_replication_quantiles, pooled_quantile

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
    from scipy import stats  # imported on use: Ray workers load this module but never call it

    return float(stats.t.ppf(0.5 + confidence / 2.0, n - 1))


def _check(values: np.ndarray, confidence: float) -> None:
    if values.ndim != 1 or values.size < 2:
        raise ValueError("an interval needs the values of at least 2 replications")
    if not np.all(np.isfinite(values)):
        raise ValueError("per-replication values must be finite")
    if not 0 < confidence < 1:
        raise ValueError("confidence must lie strictly between 0 and 1")


def _spread_se(values: np.ndarray) -> float:
    """Standard error of a centre from the replications' spread; exactly 0 for equal values."""
    if np.all(values == values[0]):
        return 0.0
    return float(np.std(values, ddof=1) / np.sqrt(values.size))


def sectioning_interval(
    pooled: float, per_replication: Sequence[float] | np.ndarray, confidence: float = 0.95
) -> Interval:
    """pooled ± t·sd(per-replication estimates)/sqrt(R)."""
    values = np.asarray(per_replication, dtype=np.float64)
    _check(values, confidence)
    h = _t_factor(values.size, confidence) * _spread_se(values)
    return Interval(float(pooled), float(pooled - h), float(pooled + h), int(values.size))


def mean_interval(
    per_replication: Sequence[float] | np.ndarray, confidence: float = 0.95
) -> Interval:
    """Student-t interval of the average of independent per-replication values."""
    values = np.asarray(per_replication, dtype=np.float64)
    _check(values, confidence)
    return sectioning_interval(float(values.mean()), values, confidence)


def quantile_interval(
    sketches: Sequence[LogHistogram], q: float, confidence: float = 0.95
) -> Interval:
    """Pooled q-quantile of the replications' sketches, with its sectioning interval."""
    return sectioning_interval(
        pooled_quantile(sketches, q), per_replication_quantiles(sketches, q), confidence
    )


def _p_value(centre: float, se: float, n: int) -> float:
    if se == 0.0:
        return 1.0 if centre == 0.0 else 0.0
    from scipy import stats

    return float(2.0 * stats.t.sf(abs(centre) / se, n - 1))


def paired_comparison(
    baseline_pooled: float,
    other_pooled: float,
    baseline_reps: Sequence[float] | np.ndarray,
    other_reps: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
) -> Comparison:
    """Sectioning on paired per-replication values (paired t when pooled = average)."""
    base = np.asarray(baseline_reps, dtype=np.float64)
    other = np.asarray(other_reps, dtype=np.float64)
    _check(base, confidence)
    _check(other, confidence)
    if base.shape != other.shape:
        raise ValueError("paired comparison needs the same replications on both sides")
    n = int(base.size)
    t = _t_factor(n, confidence)
    diff = float(other_pooled - baseline_pooled)
    se = _spread_se(other - base)
    p = _p_value(diff, se, n)
    if diff == 0.0 and se == 0.0:
        rel, rel_lo, rel_hi = 0.0, 0.0, 0.0
    elif baseline_pooled > 0 and other_pooled > 0 and np.all(base > 0) and np.all(other > 0):
        log_ratio = float(np.log(other_pooled / baseline_pooled))
        lr_se = _spread_se(np.log(other) - np.log(base))
        rel = float(np.expm1(log_ratio))
        rel_lo = float(np.expm1(log_ratio - t * lr_se))
        rel_hi = float(np.expm1(log_ratio + t * lr_se))
    elif baseline_pooled != 0:
        scale = abs(baseline_pooled)
        rel, rel_lo, rel_hi = diff / scale, (diff - t * se) / scale, (diff + t * se) / scale
    else:  # a zero baseline with a non-zero difference has no finite relative size
        rel = rel_lo = rel_hi = float(np.copysign(np.inf, diff))
    return Comparison(
        baseline_estimate=float(baseline_pooled),
        estimate=float(other_pooled),
        diff=diff,
        diff_low=diff - t * se,
        diff_high=diff + t * se,
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
    return paired_comparison(
        pooled_quantile(baseline, q),
        pooled_quantile(other, q),
        per_replication_quantiles(baseline, q),
        per_replication_quantiles(other, q),
        confidence,
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
