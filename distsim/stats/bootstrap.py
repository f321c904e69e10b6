"""A bootstrap over replications for pooled quantiles (`quantile_intervals: bootstrap`).

The alternative to sectioning (`distsim.stats.intervals`): resample the R replications with
replacement, recompute the pooled quantile of each resample, and take a BCa interval
(`scipy.stats.bootstrap`). The unit of resampling is the replication, never the request, so the
correlation between requests of one run is kept intact. It makes no normality assumption about
the replications' shares below the pooled quantile (Woodruff's sectioning does), at the price of
~2,000 pooled quantiles per
cell and of the usual small-sample weakness of bootstrap intervals: on M/M/1 (load 0.5, 600 s
runs, 200 studies, tests/test_bootstrap.py) the 95% interval held the true P90 and P99 in 0.905
of studies with R = 10 and in 0.95 / 0.94 with R = 20 — use R >= 20 (sectioning: 0.95-0.96 at
R = 10, docs/statistics.md).

Making 2,000 pooled quantiles cheap: every replication's sketch is laid out on the union of
occupied bins (an R x K matrix of cumulative counts); a resample is a vector of multiplicities w
(how often each replication was drawn), its pooled cumulative histogram is w @ that matrix, and
its quantile one search per resample — the same order statistic `LogHistogram.quantile` reports
(rank floor(q (n-1)), bin representative, clamped to the resample's own min and max).

Resampling is seeded from the study's seed and a name (scenario, architecture, metric), so an
interval is the same on every run.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats

from distsim.stats.intervals import Interval
from distsim.stats.sketch import LogHistogram

N_RESAMPLES = 2000
_BATCH = 250  # resamples evaluated at once (bounds memory to _BATCH x bins)


class DenseSketches:
    """R sketches on the union of their bins: what resampled pooled quantiles need."""

    def __init__(self, sketches: Sequence[LogHistogram]) -> None:
        parts = [s.index.astype(np.int64) for s in sketches]
        keys = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
        self.counts = np.zeros((len(sketches), keys.size), dtype=np.float64)
        for i, s in enumerate(sketches):
            self.counts[i, np.searchsorted(keys, s.index.astype(np.int64))] = s.count
        union = LogHistogram(keys.astype(np.int32), np.ones(keys.size, np.int64), 0, 0.0, 0.0, 0.0)
        self.values = union.values()  # each bin's representative, exactly as the sketch has it
        self.cum = np.cumsum(self.counts, axis=1)
        self.zeros = np.array([s.zero_count for s in sketches], dtype=np.float64)
        self.mins = np.array([s.min for s in sketches], dtype=np.float64)
        self.maxs = np.array([s.max for s in sketches], dtype=np.float64)

    def quantiles(self, weights: np.ndarray, q: float) -> np.ndarray:
        """Pooled q-quantile of each row of `weights` (multiplicities of the R replications)."""
        w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        zero = w @ self.zeros
        k = self.values.size
        block = math.isqrt(k) + 1
        if k <= 4 * block:
            cum = zero[:, None] + _products(w, self.cum)
            n = cum[:, -1] if k else zero
            rank = np.floor(q * (n - 1.0))
            pos = np.minimum((cum <= rank[:, None]).sum(axis=1), k - 1)
        else:
            # The quantile's bin is the number of bins whose cumulative count is <= the rank
            # (cumulative counts never decrease): found among the block ends first, then inside
            # the one block that holds it, ~2 sqrt(K) products per resample instead of K.
            ends = np.minimum(np.arange(block - 1, k + block - 1, block), k - 1)
            coarse = zero[:, None] + _products(w, self.cum[:, ends])
            rank = np.floor(q * (coarse[:, -1] - 1.0))
            first = (coarse <= rank[:, None]).sum(axis=1) * block
            cols = np.minimum(first[:, None] + np.arange(block), k - 1)  # b x block
            inside = zero[:, None] + np.einsum("br,rbk->bk", w, self.cum[:, cols], optimize=False)
            pos = np.minimum(first + (inside <= rank[:, None]).sum(axis=1), k - 1)
        out = np.where(rank < zero, 0.0, self.values[pos] if k else 0.0)
        drawn = w > 0
        lo = np.where(drawn, self.mins, np.inf).min(axis=1)
        hi = np.where(drawn, self.maxs, -np.inf).max(axis=1)
        return np.clip(out, lo, hi)


def _products(w: np.ndarray, cum: np.ndarray) -> np.ndarray:
    """w @ cum by einsum's own loop, not BLAS, whose threads oversubscribe a busy machine for
    these thin products; exact in any order (integer multiplicities times integer counts)."""
    return np.einsum("br,rk->bk", w, cum, optimize=False)


def _weights(indices: np.ndarray, r: int) -> np.ndarray:
    """Rows of replication indices -> rows of multiplicities."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1, indices.shape[-1])
    w = np.zeros((idx.shape[0], r))
    np.add.at(w, (np.repeat(np.arange(idx.shape[0]), idx.shape[1]), idx.ravel()), 1.0)
    return w


def quantile_interval(
    sketches: Sequence[LogHistogram],
    q: float,
    confidence: float = 0.95,
    rng: np.random.Generator | None = None,
    n_resamples: int = N_RESAMPLES,
) -> Interval:
    """Pooled q-quantile with a BCa bootstrap interval over replications."""
    r = len(sketches)
    if r < 2:
        raise ValueError("an interval needs the values of at least 2 replications")
    dense = DenseSketches(sketches)
    estimate = float(dense.quantiles(np.ones((1, r)), q)[0])
    per_rep = dense.quantiles(np.eye(r), q)
    if np.all(per_rep == per_rep[0]) and np.all(dense.counts == dense.counts[0]):
        return Interval(estimate, estimate, estimate, r)  # every resample is the same

    def statistic(indices: np.ndarray, axis: int = -1) -> np.ndarray:
        idx = np.moveaxis(np.asarray(indices), axis, -1)
        values = dense.quantiles(_weights(idx, r), q)
        return values.reshape(idx.shape[:-1])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate-data warnings: fall back below
        res = stats.bootstrap(
            (np.arange(r),),
            statistic,
            vectorized=True,
            n_resamples=n_resamples,
            batch=_BATCH,
            confidence_level=confidence,
            method="BCa",
            random_state=rng if rng is not None else np.random.default_rng(0),
        )
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(low) and np.isfinite(high)):  # BCa undefined (e.g. a tied jackknife)
        low, high = estimate, estimate
    return Interval(estimate, min(low, estimate), max(high, estimate), r)
