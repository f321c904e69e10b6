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
from typing import Any

import numpy as np
import pandas as pd

from distsim.errors import SpecError
from distsim.workload.streams import stream

N_RESAMPLES = 2000


@dataclass(frozen=True)
class GoodputEstimate:
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
) -> tuple[dict[str, GoodputEstimate], dict[str, GoodputEstimate]]:
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
        boot[arch] = (
            np.array([crossing(rates, _curve(a[:, idx]), target)[0] for idx in draws]) / gpus[arch]
        )
    per_gpu = {
        arch: GoodputEstimate(
            estimate=point[arch][0],
            ci_low=float(np.quantile(boot[arch], alpha)),
            ci_high=float(np.quantile(boot[arch], 1 - alpha)),
            n=n_reps,
            censored=point[arch][1],
        )
        for arch in att
    }
    ratios: dict[str, GoodputEstimate] = {}
    base = boot[baseline]
    for arch in att:
        if arch == baseline:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            r = boot[arch] / base
            est = point[arch][0] / point[baseline][0] if point[baseline][0] > 0 else np.nan
        flags = {point[arch][1], point[baseline][1]} - {""}
        ratios[arch] = GoodputEstimate(
            estimate=float(est),
            ci_low=float(np.nanquantile(r, alpha)) if np.isfinite(r).any() else np.nan,
            ci_high=float(np.nanquantile(r, 1 - alpha)) if np.isfinite(r).any() else np.nan,
            n=n_reps,
            censored=",".join(sorted(flags)),
        )
    return per_gpu, ratios


# ---------------------------------------------------------------- study integration

RATE_PATH = "workload.arrival.rate_rps"
GOODPUT_METRIC = "goodput_rps_per_gpu"
RATIO_METRIC = "goodput_ratio_vs_baseline"
GOODPUT_SCENARIO = "goodput"  # scenario_id of goodput rows in summary.csv (they span rates)


def with_rate_sweep(study: Any) -> Any:
    """The study with `goodput.rates_rps` swept at `workload.arrival.rate_rps` (unchanged when
    the study has no `goodput`); sweeping that path as well is an error."""
    if study.goodput is None:
        return study
    rates = [float(r) for r in study.goodput.rates_rps]
    swept = study.sweep.get(RATE_PATH)
    if swept is not None and [float(r) for r in swept] == rates:
        return study  # already applied: the resolved spec an output folder stores (spec.yaml)
    if RATE_PATH in study.sweep or any(RATE_PATH in p for p in study.scenarios):
        raise SpecError(
            f"goodput: rates come from goodput.rates_rps; do not also sweep or set {RATE_PATH}"
        )
    return study.model_copy(
        update={"sweep": {RATE_PATH: list(study.goodput.rates_rps), **study.sweep}}
    )


def _gpus(arch: Any) -> int:
    return int(sum(arch.pools().values()))


def summary_rows(rows: pd.DataFrame, plan: Any) -> pd.DataFrame:
    """Goodput rows in the summary.csv layout (empty without `goodput` or attainment rows):
    metric `goodput_rps_per_gpu` per architecture and `goodput_ratio_vs_baseline` per
    non-baseline architecture, one set per combination of the other swept parameters."""
    spec = plan.study.goodput
    columns = ["scenario_id", *plan.param_paths, "architecture", "metric", "estimate",
               "ci_low", "ci_high", "n"]  # fmt: skip
    if spec is None or rows.empty or "slo_attainment" not in rows.columns:
        return pd.DataFrame(columns=columns)
    others = [p for p in plan.param_paths if p != RATE_PATH]
    scenario_of = {ps.id: ps.scenario for ps in plan.scenarios}
    out: list[dict[str, Any]] = []
    groups = rows.groupby(others, dropna=False, sort=False) if others else [((), rows)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        reps = np.sort(g["replication"].unique())
        rates = np.sort(g[RATE_PATH].astype(float).unique())
        sc = scenario_of[g["scenario_id"].iloc[0]]
        gpus = {a: _gpus(sc.architectures[a]) for a in plan.architectures}
        att: dict[str, np.ndarray] = {}
        for arch in plan.architectures:
            cell = g[g["architecture"] == arch]
            table = cell.pivot_table(
                index=RATE_PATH, columns="replication", values="slo_attainment", aggfunc="first"
            )
            att[arch] = table.reindex(index=rates, columns=reps).to_numpy(dtype=float)
        rng = stream(plan.study.seed, 0, "goodput")
        per_gpu, ratios = search(
            rates, att, gpus, spec.attainment, plan.confidence, rng, plan.baseline
        )
        params = dict(zip(others, key, strict=True))
        base = {"scenario_id": GOODPUT_SCENARIO, RATE_PATH: np.nan, **params}
        for metric, table in ((GOODPUT_METRIC, per_gpu), (RATIO_METRIC, ratios)):
            for arch, gp in table.items():
                out.append(
                    {**base, "architecture": arch, "metric": metric, "estimate": gp.estimate,
                     "ci_low": gp.ci_low, "ci_high": gp.ci_high, "n": gp.n}
                )  # fmt: skip
    return pd.DataFrame(out, columns=columns)


def report_lines(plan: Any, summary: pd.DataFrame) -> list[str]:
    """The goodput block of the terminal report (no lines without goodput rows)."""
    spec = plan.study.goodput
    if spec is None or summary.empty:
        return []
    rows = summary[summary["scenario_id"] == GOODPUT_SCENARIO]
    if rows.empty:
        return []
    slo = plan.study.slo
    targets = []
    if slo.ttft_s is not None and "slo.ttft_s" not in plan.param_paths:
        targets.append(f"TTFT <= {slo.ttft_s:g} s")
    if slo.tpot_s is not None and "slo.tpot_s" not in plan.param_paths:
        targets.append(f"TPOT <= {slo.tpot_s:g} s")
    if any(p.startswith("slo") for p in plan.param_paths):
        targets.append("others as swept")
    pct = f"{plan.confidence * 100:g}%"
    lines = [
        "",
        f"goodput: highest rate per GPU with SLO attainment >= {spec.attainment:.0%} "
        f"(SLO {', '.join(targets)}; {pct} intervals from resampled replications)",
    ]
    others = [p for p in plan.param_paths if p != RATE_PATH]
    keys = rows[others].drop_duplicates() if others else pd.DataFrame(index=[0])
    top, bottom = max(spec.rates_rps), min(spec.rates_rps)
    for _, key in keys.iterrows():
        g = rows
        for p in others:
            g = g[g[p] == key[p]]
        if others:
            lines.append("  " + ", ".join(f"{p}={key[p]}" for p in others))
        for _, r in g[g["metric"] == GOODPUT_METRIC].iterrows():
            gpus = _gpus(plan.scenarios[0].scenario.architectures[r["architecture"]])
            flag = ""
            if r["estimate"] * gpus >= top:
                flag = f"  (meets the target at every rate: goodput >= {top:g} req/s)"
            elif r["estimate"] == 0:
                flag = f"  (misses the target already at {bottom:g} req/s)"
            lines.append(
                f"    {r['architecture']:<16} {r['estimate']:.3f} req/s/GPU "
                f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]{flag}"
            )
        for _, r in g[g["metric"] == RATIO_METRIC].iterrows():
            lines.append(
                f"    {r['architecture']} / {plan.baseline}: {r['estimate']:.2f}x "
                f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
            )
    return lines
