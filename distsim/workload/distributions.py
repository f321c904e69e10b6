"""Token-count distributions: draw them, and know their exact mean after rounding and clamping.

A size is drawn from a continuous distribution, rounded to the nearest integer, then clamped to
[min, max]. The exact mean of that integer variable is what the offered load uses, and what tests
compare sample means with.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from distsim.spec.workload import (
    TOKEN_CEILING,
    Constant,
    Empirical,
    Exponential,
    Lognormal,
    TokenDist,
    Uniform,
)
from distsim.workload.trace_files import load_column

if TYPE_CHECKING:  # scipy.stats is slow to import; a Ray worker never needs it
    from scipy import stats

# Integers summed exactly before the tail is taken from the continuous distribution.
_EXACT_TERMS = 200_000


def frozen(dist: TokenDist) -> stats.rv_continuous | None:
    """The scipy distribution before rounding; None for a constant or an empirical column."""
    from scipy import stats

    if isinstance(dist, Lognormal):
        return stats.lognorm(s=dist.sigma, scale=float(np.exp(dist.mu)))
    if isinstance(dist, Exponential):
        return stats.expon(scale=dist.mean)
    if isinstance(dist, Uniform):
        return stats.uniform(loc=dist.low, scale=dist.high - dist.low)
    return None


def _round_clamp(x: np.ndarray, dist: TokenDist) -> np.ndarray:
    hi = float(dist.max) if dist.max is not None else float(TOKEN_CEILING)
    return np.clip(np.rint(x), dist.min, hi).astype(np.int64)


def sample(dist: TokenDist, rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` token counts (int64), rounded and clamped."""
    if isinstance(dist, Lognormal):
        x = rng.lognormal(dist.mu, dist.sigma, n)
    elif isinstance(dist, Exponential):
        x = rng.exponential(dist.mean, n)
    elif isinstance(dist, Uniform):
        x = rng.uniform(dist.low, dist.high, n) if dist.high > dist.low else np.full(n, dist.low)
    elif isinstance(dist, Constant):
        x = np.full(n, dist.value)
    elif isinstance(dist, Empirical):
        values = load_column(dist.path, dist.column).values  # read once per process
        x = values[rng.integers(0, values.shape[0], n)]
    else:  # pragma: no cover - the spec admits no other kind
        raise TypeError(f"unknown distribution {dist!r}")
    return _round_clamp(x, dist)


@functools.lru_cache(maxsize=512)
def rounded_mean(dist: TokenDist) -> float:
    """E[clamp(round(X), min, max)]: exact sum up to min + 200,000 tokens, closed-form tail.

    The exact sum is not cheap and every replication's offered load asks for it, so it is
    memoised per process (the spec models are frozen and hashable; the value is a pure function
    of the distribution, and an empirical column is read once per process anyway).
    """
    if isinstance(dist, Constant):
        return float(_round_clamp(np.array([dist.value]), dist)[0])
    if isinstance(dist, Empirical):
        return float(_round_clamp(load_column(dist.path, dist.column).values, dist).mean())
    if isinstance(dist, Uniform) and dist.high == dist.low:
        return float(_round_clamp(np.array([dist.low]), dist)[0])
    lo = dist.min
    hi = dist.max if dist.max is not None else TOKEN_CEILING
    # P(round(X) <= k) = P(X < k + 0.5); everything rounding to <= lo counts as lo.
    top = min(hi, lo + _EXACT_TERMS)
    ks = np.arange(lo, top + 1, dtype=np.float64)
    cdf_upper = _cdf(dist, ks + 0.5)
    cdf_upper[-1] = 1.0 if top == hi else cdf_upper[-1]
    probs = np.diff(np.concatenate(([0.0], cdf_upper)))
    mean = float(np.dot(ks, probs))
    if top < hi:
        # Tail beyond the exact sum: E[min(X, hi); X >= top + 0.5]; rounding there is negligible.
        cut = top + 0.5
        mean += _partial_mean(dist, cut, float(hi)) + hi * float(_sf(dist, np.float64(hi)))
    return mean


def _standardised(dist: TokenDist, x: np.ndarray) -> np.ndarray:
    """x in the units scipy's `frozen(dist)` evaluates its cdf/sf in: (x - loc) / scale."""
    if isinstance(dist, Lognormal):
        return np.asarray((x - 0) / float(np.exp(dist.mu)), dtype=np.float64)
    if isinstance(dist, Exponential):
        return np.asarray((x - 0) / dist.mean, dtype=np.float64)
    if isinstance(dist, Uniform):
        return np.asarray((x - dist.low) / (dist.high - dist.low), dtype=np.float64)
    raise TypeError(f"no continuous part in {dist!r}")  # pragma: no cover


def _cdf(dist: TokenDist, x: np.ndarray) -> Any:
    """`frozen(dist).cdf(x)` for x > 0, bit for bit (the same scipy.special functions on the
    same standardised values), without importing scipy.stats (slow to import, in every Ray worker).
    tests/runner/test_worker_imports.py compares the two."""
    from scipy.special import expm1, ndtr

    z = _standardised(dist, x)
    if isinstance(dist, Lognormal):
        return ndtr(np.log(z) / dist.sigma)
    if isinstance(dist, Exponential):
        return -expm1(-z)
    return np.clip(z, 0.0, 1.0)  # Uniform: 0 below the support, 1 above, linear inside


def _sf(dist: TokenDist, x: np.ndarray) -> Any:
    """`frozen(dist).sf(x)` for x > 0, bit for bit (see `_cdf`)."""
    from scipy.special import ndtr

    z = _standardised(dist, x)
    if isinstance(dist, Lognormal):
        return ndtr(-(np.log(z) / dist.sigma))
    if isinstance(dist, Exponential):
        return np.exp(-z)
    return np.clip(1.0 - z, 0.0, 1.0)


def _partial_mean(dist: TokenDist, a: float, b: float) -> float:
    """E[X; a < X <= b] of the continuous distribution, in closed form."""
    from scipy.special import ndtr

    if isinstance(dist, Lognormal):
        m = np.exp(dist.mu + dist.sigma**2 / 2)
        z = ndtr
        s2 = dist.mu + dist.sigma**2
        return float(m * (z((s2 - np.log(a)) / dist.sigma) - z((s2 - np.log(b)) / dist.sigma)))
    if isinstance(dist, Exponential):
        t = dist.mean
        return float((a + t) * np.exp(-a / t) - (b + t) * np.exp(-b / t))
    if isinstance(dist, Uniform):
        lo, hi = max(a, dist.low), min(b, dist.high)
        return float((hi**2 - lo**2) / (2 * (dist.high - dist.low))) if hi > lo else 0.0
    raise TypeError(f"no continuous part in {dist!r}")  # pragma: no cover
