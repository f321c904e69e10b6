"""A bounded, mergeable summary of a latency sample: a sparse log-spaced histogram.

Picture the positive time axis cut into bins whose edges grow by a constant factor
``GAMMA = (1 + a) / (1 - a)`` with ``a = RELATIVE_ACCURACY = 5e-4``: bin ``k`` holds the values in
``(GAMMA**(k-1), GAMMA**k]`` and reports them as ``2 * GAMMA**k / (GAMMA + 1)``, which lies within a
relative distance ``a`` (0.05 %) of every value in the bin. A replication keeps only the occupied
bins (index and count), so what a worker ships does not grow with the number of requests: at most
``ln(max / min) / ln(GAMMA)`` entries — about 1,000 per factor of e, e.g. at most 11,500 entries
(~140 kB) for latencies spread from 1 ms to 100 s, typically a few thousand.

Sketches of replications merge exactly (counts add), so the driver gets the pooled distribution
of every measured request of every replication, and each replication's own quantiles as well.

Quantile convention: ``quantile(q)`` estimates the order statistic of 0-based rank
``floor(q * (n - 1))`` (numpy's ``method="lower"``) with relative error at most ``a``; the result is
clamped to the exact sample minimum and maximum, which are kept alongside. Values at or below
``ZERO_S`` (1 ns) are counted in a separate zero bin and reported as 0. The exact sum is kept too,
so the mean is exact.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

RELATIVE_ACCURACY = 5e-4
GAMMA = (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(GAMMA)
ZERO_S = 1e-9  # values at or below this count as zero (no bin index for them)


def _count_keys(
    keys: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct bin indices (int32) and their total counts (int64): a count per index
    between the smallest and largest (at most ~1,000 per factor e of the values' range), so
    no sort; empty `keys` give empty arrays."""
    if keys.size == 0:
        return np.zeros(0, np.int32), np.zeros(0, np.int64)
    low = int(keys.min())
    if weights is None:
        per_key = np.bincount(keys - low)
    else:  # float sums: exact for counts below 2**53
        per_key = np.bincount(keys - low, weights=weights).astype(np.int64)
    occupied = np.flatnonzero(per_key)
    return (occupied + low).astype(np.int32), per_key[occupied].astype(np.int64)


@dataclass(frozen=True)
class LogHistogram:
    """Occupied log-bins of one sample (or of several merged): sorted indices and their counts."""

    index: np.ndarray  # int32, strictly increasing bin indices
    count: np.ndarray  # int64 > 0, same length
    zero_count: int
    sum: float  # exact sum of the values (seconds)
    min: float
    max: float

    # ------------------------------------------------------------------ construction

    @classmethod
    def empty(cls) -> LogHistogram:
        return cls(np.zeros(0, np.int32), np.zeros(0, np.int64), 0, 0.0, float("nan"), float("nan"))

    @classmethod
    def of(cls, values: np.ndarray) -> LogHistogram:
        """The sketch of a sample of non-negative finite values."""
        x = np.asarray(values, dtype=np.float64)
        if x.size == 0:
            return cls.empty()
        if not np.all(np.isfinite(x)) or x.min() < 0:
            raise ValueError("a latency sketch takes finite, non-negative values")
        positive = x[x > ZERO_S]
        keys = np.ceil(np.log(positive) / _LOG_GAMMA).astype(np.int64)
        index, count = _count_keys(keys)
        return cls(
            index=index,
            count=count,
            zero_count=int(x.size - positive.size),
            sum=float(x.sum()),
            min=float(x.min()),
            max=float(x.max()),
        )

    @classmethod
    def merge(cls, sketches: Iterable[LogHistogram]) -> LogHistogram:
        """One sketch holding every value of the given ones (exact: counts add)."""
        parts = [s for s in sketches if s.n > 0]
        if not parts:
            return cls.empty()
        keys = np.concatenate([s.index.astype(np.int64) for s in parts])
        counts = np.concatenate([s.count for s in parts])
        index, count = _count_keys(keys, counts)
        return cls(
            index=index,
            count=count,
            zero_count=sum(s.zero_count for s in parts),
            sum=float(sum(s.sum for s in parts)),
            min=min(s.min for s in parts),
            max=max(s.max for s in parts),
        )

    # ------------------------------------------------------------------ reading

    @property
    def n(self) -> int:
        return int(self.zero_count + self.count.sum())

    @property
    def mean(self) -> float:
        return self.sum / self.n if self.n else float("nan")

    def values(self) -> np.ndarray:
        """Representative value of each occupied bin (within RELATIVE_ACCURACY of its members)."""
        return 2.0 * np.exp(self.index.astype(np.float64) * _LOG_GAMMA) / (GAMMA + 1.0)

    def quantile(self, q: float | Sequence[float] | np.ndarray) -> Any:
        """Order statistic of rank floor(q (n-1)), to within RELATIVE_ACCURACY; NaN if empty."""
        qs = np.atleast_1d(np.asarray(q, dtype=np.float64))
        if np.any((qs < 0) | (qs > 1)):
            raise ValueError("quantile levels must lie in [0, 1]")
        if self.n == 0:
            out = np.full(qs.shape, np.nan)
        else:
            rank = np.floor(qs * (self.n - 1)).astype(np.int64)  # 0-based
            cum = self.zero_count + np.cumsum(self.count)
            pos = np.searchsorted(cum, rank, side="right")
            vals = np.concatenate((self.values(), [self.max]))
            out = np.where(rank < self.zero_count, 0.0, vals[np.minimum(pos, self.index.size)])
            out = np.clip(out, self.min, self.max)
        return float(out[0]) if np.ndim(q) == 0 else out

    def count_at_most(self, value: float) -> int:
        """How many values of the sample are at most `value` (values sharing `value`'s bin count
        as at most it, as `quantile` reports a bin by one value)."""
        if self.n == 0 or value < 0:
            return 0
        if value <= ZERO_S:
            return self.zero_count
        key = math.ceil(math.log(value) / _LOG_GAMMA)
        return int(self.zero_count + self.count[: np.searchsorted(self.index, key, "right")].sum())

    def sum_above(self, value: float) -> float:
        """Sum of the values above `value` (bin representatives; within RELATIVE_ACCURACY)."""
        if self.n == 0:
            return 0.0
        key = math.ceil(math.log(max(value, ZERO_S)) / _LOG_GAMMA)
        start = int(np.searchsorted(self.index, key, "right"))
        return float(np.dot(self.values()[start:], self.count[start:]))

    def cdf_points(self) -> tuple[np.ndarray, np.ndarray]:
        """(value, fraction of the sample at or below it) at every occupied bin, for plots."""
        vals = self.values()
        frac = (self.zero_count + np.cumsum(self.count)) / max(self.n, 1)
        if self.zero_count:
            return np.concatenate(([0.0], vals)), np.concatenate(([self.zero_count / self.n], frac))
        return vals, frac

    # ------------------------------------------------------------------ storage

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers (JSON, Parquet list columns, Ray)."""
        return {
            "index": self.index.tolist(),
            "count": self.count.tolist(),
            "zero_count": self.zero_count,
            "sum": self.sum,
            "min": self.min,
            "max": self.max,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogHistogram:
        return cls(
            index=np.asarray(data["index"], dtype=np.int32),
            count=np.asarray(data["count"], dtype=np.int64),
            zero_count=int(data["zero_count"]),
            sum=float(data["sum"]),
            min=float(data["min"]) if data["min"] is not None else float("nan"),
            max=float(data["max"]) if data["max"] is not None else float("nan"),
        )


def to_json(sketch: LogHistogram) -> str:
    """Compact text for a Parquet string column: bin indices as first + successive gaps."""
    idx = sketch.index.astype(np.int64)
    gaps = np.diff(idx).tolist() if idx.size else []
    return json.dumps(
        {
            "i0": int(idx[0]) if idx.size else 0,
            "di": gaps,
            "c": sketch.count.tolist(),
            "z": sketch.zero_count,
            "sum": sketch.sum,
            "min": None if math.isnan(sketch.min) else sketch.min,
            "max": None if math.isnan(sketch.max) else sketch.max,
        },
        separators=(",", ":"),
    )


def from_json(text: str) -> LogHistogram:
    data = json.loads(text)
    counts = np.asarray(data["c"], dtype=np.int64)
    index = (
        np.concatenate(([data["i0"]], data["i0"] + np.cumsum(data["di"], dtype=np.int64)))
        if counts.size
        else np.zeros(0)
    )
    return LogHistogram.from_dict(
        {
            "index": index,
            "count": counts,
            "zero_count": data["z"],
            "sum": data["sum"],
            "min": data["min"],
            "max": data["max"],
        }
    )


def per_replication_quantiles(sketches: Sequence[LogHistogram], q: float) -> np.ndarray:
    """Each replication's own q-quantile, in the order given."""
    return np.array([s.quantile(q) for s in sketches], dtype=np.float64)


def pooled_quantile(sketches: Sequence[LogHistogram], q: float) -> float:
    """The q-quantile of all values of all the given sketches together."""
    return float(LogHistogram.merge(sketches).quantile(q))
