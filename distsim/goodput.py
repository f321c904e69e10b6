"""Goodput: the highest arrival rate per GPU at which an architecture still meets its SLO.

A study with `goodput: {rates_rps: [...], attainment: 0.9}` runs every arrival rate of the list
(as if swept) for every architecture, on common random numbers: replication r of every rate
and every architecture shares its random streams. From the SLO attainment of each replication:

1. The attainment curve is the mean over replications at each rate (rates sorted).
2. The goodput is where the curve first falls below the target: with k the number of leading
   rates whose attainment is >= target, it is linearly interpolated between rate k-1 (meets)
   and rate k (fails). If every rate meets the target it is the highest rate, and is flagged
   *censored* (the true goodput may be higher: extend `rates_rps`); if the lowest rate already
   fails it is 0 (also flagged). Per GPU: divided by the architecture's total GPU count.
3. The interval resamples whole replications with replacement (the same draw for every rate and
   architecture, which keeps the common random numbers paired) and takes the percentile interval
   of the recomputed goodput at the study's confidence; the ratio of each architecture's
   goodput to the baseline's gets its interval from the same resamples.

Pure functions; the resampling generator is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_RESAMPLES = 2000


@dataclass(frozen=True)
class Goodput:
    """One architecture's goodput (per GPU) with its interval."""

    estimate: float
    ci_low: float
    ci_high: float
    n: int  # replications
    censored: str  # "" | "above" (meets the target at every rate) | "below" (at none)


def crossing(rates: np.ndarray, attainment: np.ndarray, target: float) -> tuple[float, str]:
    """Highest rate with attainment >= target on the curve (`rates` sorted ascending)."""
    meets = attainment >= target
    k = int(np.argmin(meets)) if not meets.all() else len(rates)
    if k == len(rates):
        return float(rates[-1]), "above"
    if k == 0:
        return 0.0, "below"
    a0, a1 = attainment[k - 1], attainment[k]
    r0, r1 = rates[k - 1], rates[k]
    return float(r0 + (r1 - r0) * (a0 - target) / (a0 - a1)), ""


def _curve(att: np.ndarray) -> np.ndarray:
    """Mean over replications (columns) per rate (rows), ignoring missing replications."""
    with np.errstate(invalid="ignore"):
        return np.nanmean(att, axis=1)


def search(
    rates_rps: np.ndarray,
    attainment: dict[str, np.ndarray],
    gpus: dict[str, int],
    target: float,
    confidence: float,
    rng: np.random.Generator,
    baseline: str,
    n_resamples: int = N_RESAMPLES,
) -> tuple[dict[str, Goodput], dict[str, Goodput]]:
    """Goodput per GPU of each architecture, and its ratio to the baseline's.

    `attainment[arch]` has one row per rate (in `rates_rps` order) and one column per
    replication (NaN where missing); every architecture has the same columns.
    """
    order = np.argsort(rates_rps, kind="stable")
    rates = np.asarray(rates_rps, dtype=float)[order]
    att = {a: np.asarray(v, dtype=float)[order] for a, v in attainment.items()}
    n_reps = next(iter(att.values())).shape[1]
    draws = rng.integers(0, n_reps, size=(n_resamples, n_reps))
    alpha = (1.0 - confidence) / 2.0
    point: dict[str, tuple[float, str]] = {}
    boot: dict[str, np.ndarray] = {}
    for arch, a in att.items():
        est, flag = crossing(rates, _curve(a), target)
        point[arch] = (est / gpus[arch], flag)
        boot[arch] = np.array(
            [crossing(rates, _curve(a[:, idx]), target)[0] for idx in draws]
        ) / gpus[arch]
    per_gpu = {
        arch: Goodput(
            estimate=point[arch][0],
            ci_low=float(np.quantile(boot[arch], alpha)),
            ci_high=float(np.quantile(boot[arch], 1 - alpha)),
            n=n_reps,
            censored=point[arch][1],
        )
        for arch in att
    }
    ratios: dict[str, Goodput] = {}
    base = boot[baseline]
    for arch in att:
        if arch == baseline:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            r = boot[arch] / base
            est = point[arch][0] / point[baseline][0] if point[baseline][0] > 0 else np.nan
        flags = {point[arch][1], point[baseline][1]} - {""}
        ratios[arch] = Goodput(
            estimate=float(est),
            ci_low=float(np.nanquantile(r, alpha)) if np.isfinite(r).any() else np.nan,
            ci_high=float(np.nanquantile(r, 1 - alpha)) if np.isfinite(r).any() else np.nan,
            n=n_reps,
            censored=",".join(sorted(flags)),
        )
    return per_gpu, ratios
