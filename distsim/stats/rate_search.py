"""Goodput by search: the highest arrival rate at which mean SLO attainment still meets a target.

Rates are probed on a geometric grid, rate_i = low x (1 + p/2)^i up to `high` (p: the requested
relative precision), so probes are reused across the three bisections, across looks with more
replications and across resumed runs. Replication r of every probe uses the same random streams
(common random numbers: the same request sizes, the same unit-rate arrival gaps scaled by the
rate), so attainment is, replication by replication, close to monotone in the rate.

At each probe the replications' attainments are tested against the target with a Student t test
at level `confidence`: *meets* (significantly above), *fails* (significantly below) or
*undecided*. Three bisections over the grid give

- the estimate: where the mean attainment crosses the target (linear between the two grid
  rates around the crossing);
- the interval [L, U]: L the highest rate still significantly meeting the target, U the lowest
  significantly failing it. This is the test-inversion interval (the rates the test does not
  reject), widened to the grid: it contains the true crossing rate whenever the test at that
  rate does not reject, which happens with probability >= `confidence`, provided the mean
  attainment and the test statistic decrease with the rate.

Pure functions; `replay` re-derives the search from the probes simulated so far and names the
next probe it needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

MEETS, UNDECIDED, FAILS = 1, 0, -1


def grid_rate(low: float, rel_precision: float, i: int) -> float:
    return low * (1.0 + rel_precision / 2.0) ** i


def grid_size(low: float, high: float, rel_precision: float) -> int:
    """Index of the last grid rate (the first at or above `high`)."""
    return max(1, math.ceil(math.log(high / low) / math.log1p(rel_precision / 2.0)))


def outcome(attainment: np.ndarray, target: float, confidence: float) -> int:
    """MEETS / FAILS when the t interval of the mean attainment lies above / below the target."""
    x = np.asarray(attainment, dtype=np.float64)
    m = float(x.mean())
    if x.size < 2 or np.all(x == x[0]):
        return MEETS if m >= target else FAILS  # no spread: the mean is exact
    from scipy import stats

    h = float(stats.t.ppf(0.5 + confidence / 2.0, x.size - 1)) * float(x.std(ddof=1))
    h /= math.sqrt(x.size)
    if m - h > target:
        return MEETS
    if m + h < target:
        return FAILS
    return UNDECIDED


@dataclass
class Search:
    """The state of one candidate's search. `need` is the grid index to probe next (None when
    done); `estimate`, `low`, `high` are rates (NaN until known); `censored` is "below" (fails
    already at the lowest rate) or "above" (meets at the highest)."""

    need: int | None = None
    estimate: float = math.nan
    low: float = math.nan
    high: float = math.nan
    censored: str = ""
    probes: dict[int, tuple[float, int, float]] = field(default_factory=dict)  # i -> rate, n, mean


class _Need(Exception):
    def __init__(self, index: int) -> None:
        self.index = index


def _bisect(lo: int, hi: int, keeps_low: Callable[[int], bool]) -> tuple[int, int]:
    """Narrow [lo, hi] to adjacent grid indices: the midpoint replaces `lo` while `keeps_low`
    holds there, `hi` otherwise (probing midpoints in the same order as any bisection)."""
    while hi - lo > 1:
        m = (lo + hi) // 2
        if keeps_low(m):
            lo = m
        else:
            hi = m
    return lo, hi


def replay(
    attainment: Mapping[int, np.ndarray],
    low: float,
    high: float,
    rel_precision: float,
    target: float,
    confidence: float,
    replications: int,
) -> Search:
    """Run the three bisections on the probes available (grid index -> attainment per
    replication, at least `replications` of them to count)."""
    top = grid_size(low, high, rel_precision)
    out = Search()

    def get(i: int) -> np.ndarray:
        x = attainment.get(i)
        if x is None or np.sum(np.isfinite(x[:replications])) < replications:
            raise _Need(i)
        x = np.asarray(x[:replications], dtype=np.float64)
        out.probes[i] = (grid_rate(low, rel_precision, i), int(x.size), float(x.mean()))
        return x

    def rate(i: int) -> float:
        return grid_rate(low, rel_precision, i)

    try:
        if outcome(get(0), target, confidence) == FAILS:
            out.estimate, out.low, out.high, out.censored = 0.0, 0.0, rate(0), "below"
            return out
        if outcome(get(top), target, confidence) == MEETS:
            out.estimate, out.low, out.high, out.censored = rate(top), rate(top), math.inf, "above"
            return out
        a, b = 0, top  # mean(a) >= target > mean(b) once bisected
        if float(get(a).mean()) < target:
            b = a
        elif float(get(b).mean()) >= target:
            a = b
        a, b = _bisect(a, b, lambda m: float(get(m).mean()) >= target)
        if a == b:
            out.estimate = rate(a)
        else:
            ma, mb = float(get(a).mean()), float(get(b).mean())
            out.estimate = rate(a) + (rate(b) - rate(a)) * (ma - target) / (ma - mb)
        lo_a, lo_b = 0, max(a, 0)  # outcome(0) is not FAILS; find the last MEETS below a
        if outcome(get(lo_a), target, confidence) != MEETS:
            out.low = 0.0
        else:
            lo_a, lo_b = _bisect(lo_a, lo_b, lambda m: outcome(get(m), target, confidence) == MEETS)
            if outcome(get(lo_b), target, confidence) == MEETS:
                lo_a = lo_b
            out.low = rate(lo_a)
        hi_a, hi_b = min(b, top), top  # outcome(top) is not MEETS; find the first FAILS above b
        if outcome(get(hi_b), target, confidence) != FAILS:
            out.high = math.inf
        else:
            hi_a, hi_b = _bisect(hi_a, hi_b, lambda m: outcome(get(m), target, confidence) != FAILS)
            if outcome(get(hi_a), target, confidence) == FAILS:
                hi_b = hi_a
            out.high = rate(hi_b)
    except _Need as need:
        out.need = need.index
    return out
