"""The statistics the study runner calls: estimates with intervals, paired comparisons.

Pure functions of per-replication values (index i of every array is replication i). They adapt
`distsim.stats.intervals` (replication-level intervals and paired tests) to what a stored study
holds:
missing values (a failed or absent replication) are dropped pairwise, fewer than two values give
an estimate without an interval instead of an exception, and identical inputs give a difference of
0, interval [0, 0], p-value 1, never NaN.

This is the single seam between aggregation and statistics: deepen the methods here (pooled
quantiles, multiple-comparison adjustment) and `aggregate` follows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from distsim.stats import intervals
from distsim.stats.intervals import (
    Interval,
    QuantileSection,
    adjust_p_values,
    quantile_interval,
    quantile_section,
    sectioning_interval,
)
from distsim.stats.sketch import LogHistogram

__all__ = [
    "Interval",
    "PairedDifference",
    "adjust_p_values",
    "mean_interval",
    "paired_difference",
    "paired_quantile_difference",
    "paired_sections_difference",
    "QuantileSection",
    "quantile_interval",
    "quantile_section",
    "sectioning_interval",
]


@dataclass(frozen=True)
class PairedDifference(intervals.Comparison):
    """`other - baseline` over the same replications (common random numbers).

    The fields of `intervals.Comparison` (difference, relative difference, their intervals, the
    p-value and the pair count `n`) plus `significant`: p_value < 1 - confidence, before any
    multiple-comparison adjustment.
    """

    significant: bool = False

    @classmethod
    def of(cls, c: intervals.Comparison, confidence: float) -> PairedDifference:
        """The runner's view of an `intervals.Comparison`."""
        # vars, not dataclasses.asdict: the same flat fields without asdict's deep copy
        return cls(**vars(c), significant=bool(c.p_value < 1.0 - confidence))


def _finite(values: np.ndarray | list[float]) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    return x[np.isfinite(x)]


def mean_interval(values: np.ndarray | list[float], confidence: float) -> Interval:
    """Mean of the finite values with a Student-t interval over replications.

    One value gives the value with NaN ends (no spread to measure); none gives all NaN.
    """
    x = _finite(values)
    if x.size >= 2:
        return intervals.mean_interval(x, confidence)
    if x.size == 1:
        return Interval(float(x[0]), math.nan, math.nan, 1)
    return Interval(math.nan, math.nan, math.nan, 0)


def paired_difference(
    baseline: np.ndarray | list[float], other: np.ndarray | list[float], confidence: float
) -> PairedDifference:
    """Paired-t comparison of `other` with `baseline`; pairs with a missing side are dropped."""
    x = np.asarray(baseline, dtype=np.float64)
    y = np.asarray(other, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length ({x.size} vs {y.size})")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = int(x.size)
    if n >= 2:
        return PairedDifference.of(intervals.paired_mean_comparison(x, y, confidence), confidence)
    nan = math.nan
    if n == 0:
        return PairedDifference(nan, nan, nan, nan, nan, nan, nan, nan, 1.0, 0)
    base, oth = float(x[0]), float(y[0])
    diff = oth - base
    rel = 0.0 if diff == 0.0 else (diff / abs(base) if base != 0.0 else nan)
    return PairedDifference(base, oth, diff, nan, nan, rel, nan, nan, 1.0, 1)


def paired_quantile_difference(
    baseline: list[LogHistogram], other: list[LogHistogram], q: float, confidence: float
) -> PairedDifference:
    """Pooled q-quantile of `other` minus `baseline` over the same replications (index i pairs
    with index i), with the interval and p-value of one paired test."""
    return PairedDifference.of(
        intervals.paired_quantile_comparison(baseline, other, q, confidence), confidence
    )


def paired_sections_difference(
    baseline: QuantileSection, other: QuantileSection, confidence: float
) -> PairedDifference:
    """`paired_quantile_difference` from the two sides' sections, already computed over the same
    replications (the summary computes them for its own rows)."""
    return PairedDifference.of(
        intervals.paired_sections_comparison(baseline, other, confidence), confidence
    )
