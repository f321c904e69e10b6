"""Cost and energy per architecture, and goodput per dollar and per kilowatt-hour.

An architecture's price is the sum over its pools of GPUs x the pool GPU's `usd_per_hour`, its
power the same sum of `power_w` (rated board power: energy figures are an upper bound at full
power, not a measurement). Both are fixed by the spec, so `cost_usd_per_hour` has no sampling
error: its interval is the point itself.

With a `goodput` block, the goodput of an architecture (requests per second meeting the SLO at
the target attainment, all its GPUs: the per-GPU goodput x GPUs) becomes

    goodput_requests_per_usd = goodput_rps x 3600 / cost_usd_per_hour
    goodput_requests_per_kwh = goodput_rps x 3600 / (power_w / 1000)

Both are the goodput times a constant of the architecture, so their intervals are the goodput
interval (resampled replications) times that constant, at the same confidence; the ratio of an
architecture's requests per dollar to the baseline's is the goodput ratio (same resamples) times
(GPUs / cost) of one over the other's. Pure functions of the plan and the summary rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from distsim.spec.serving import RATES_ONLY, Economics, economics
from distsim.stats.goodput import GOODPUT_METRIC, GOODPUT_SCENARIO, RATIO_METRIC

COST_METRIC = "cost_usd_per_hour"
PER_USD_METRIC = "goodput_requests_per_usd"
PER_KWH_METRIC = "goodput_requests_per_kwh"
PER_USD_RATIO_METRIC = "goodput_per_usd_ratio_vs_baseline"
SECONDS_PER_HOUR = 3600.0


def gpus(arch: Any) -> int:
    return int(sum(arch.pools().values()))


def cost_rows(summary: pd.DataFrame, plan: Any) -> pd.DataFrame:
    """One `cost_usd_per_hour` row per scenario x architecture whose price is known (in the
    summary.csv layout; `n` is the cell's replications, as for the other metrics)."""
    columns = list(summary.columns)
    out: list[dict[str, Any]] = []
    counts = summary[summary["metric"] == "n_requests"]  # one lookup, not a scan per scenario
    n_of: dict[tuple[str, str], int] = {}
    keys = zip(counts["scenario_id"], counts["architecture"], strict=True)
    for key, n in zip(keys, counts["n"], strict=True):
        n_of.setdefault(key, int(n))
    for ps in plan.scenarios:
        for arch in plan.architectures:
            econ = economics(ps.scenario, ps.scenario.architectures[arch])
            if econ.cost_usd_per_hour is None:
                continue
            n = n_of.get((ps.id, arch), 0)
            c = econ.cost_usd_per_hour
            out.append(
                {"scenario_id": ps.id, **ps.params, "architecture": arch, "metric": COST_METRIC,
                 "estimate": c, "ci_low": c, "ci_high": c, "n": n, "flags": ""}
            )  # fmt: skip
    return pd.DataFrame(out, columns=columns)


def _scaled(row: pd.Series, metric: str, factor: float) -> dict[str, Any]:
    out = row.to_dict()
    out.update(
        metric=metric,
        estimate=row["estimate"] * factor,
        ci_low=row["ci_low"] * factor,
        ci_high=row["ci_high"] * factor,
    )
    return out


def goodput_cost_rows(goodput_rows: pd.DataFrame, plan: Any) -> pd.DataFrame:
    """Requests per dollar and per kWh (and the per-dollar ratio to the baseline) from the
    goodput rows of `distsim.stats.goodput.summary_rows`; none where a price or power is
    unknown. Scenario ids and swept parameters as in the goodput rows."""
    columns = list(goodput_rows.columns)
    if goodput_rows.empty:
        return pd.DataFrame(columns=columns)
    sc = plan.scenarios[0].scenario  # the goodput rows span the swept rates; hardware is fixed
    econ: dict[str, Economics] = {a: economics(sc, sc.architectures[a]) for a in plan.architectures}
    n_gpus = {a: gpus(sc.architectures[a]) for a in plan.architectures}
    out: list[dict[str, Any]] = []
    for _, row in goodput_rows.iterrows():
        arch = row["architecture"]
        e = econ[arch]
        if row["metric"] == GOODPUT_METRIC:
            rps_per_gpu_to_total = n_gpus[arch] * SECONDS_PER_HOUR
            if e.cost_usd_per_hour:
                out.append(_scaled(row, PER_USD_METRIC, rps_per_gpu_to_total / e.cost_usd_per_hour))
            if e.power_w:
                out.append(_scaled(row, PER_KWH_METRIC, rps_per_gpu_to_total / (e.power_w / 1e3)))
        elif row["metric"] == RATIO_METRIC:
            b = econ[plan.baseline]
            if e.cost_usd_per_hour and b.cost_usd_per_hour:
                factor = (n_gpus[arch] / e.cost_usd_per_hour) / (
                    n_gpus[plan.baseline] / b.cost_usd_per_hour
                )
                out.append(_scaled(row, PER_USD_RATIO_METRIC, factor))
    return pd.DataFrame(out, columns=columns)


def hardware_lines(scenario: Any, architectures: list[str]) -> list[str]:
    """Per architecture, each pool's GPU count and type, and the price and power when known:
    `split: prefill 1 x h100-sxm + decode 3 x a100-80gb · $9.83/h · 1.90 kW rated`. None when
    every GPU is given by its token rates alone and has no price."""
    lines = []
    known = [economics(scenario, scenario.architectures[a]) for a in architectures]
    if all(e.cost_usd_per_hour is None and set(e.gpu_labels.values()) == {RATES_ONLY}
           for e in known):  # fmt: skip
        return []  # GPUs given by token rates alone: nothing to say beyond the spec
    for name in architectures:
        arch = scenario.architectures[name]
        e = economics(scenario, arch)
        pools = " + ".join(
            f"{pool} {count} x {e.gpu_labels[pool]}" if len(arch.pools()) > 1
            else f"{count} x {e.gpu_labels[pool]}"
            for pool, count in arch.pools().items()
        )  # fmt: skip
        extra = []
        if e.cost_usd_per_hour is not None:
            extra.append(f"${e.cost_usd_per_hour:,.2f}/h")
        if e.power_w is not None:
            extra.append(f"{e.power_w / 1e3:,.2f} kW rated")
        routing = getattr(arch, "routing", "central")
        if routing != "central":
            extra.append(f"routing {routing}")
        lines.append(" · ".join([f"{name}: {pools}", *extra]))
    return lines


def report_lines(plan: Any, summary: pd.DataFrame) -> list[str]:
    """The per-dollar block of the terminal report (none without those rows)."""
    if summary.empty:
        return []
    rows = summary[summary["scenario_id"] == GOODPUT_SCENARIO]
    usd = rows[rows["metric"] == PER_USD_METRIC]
    if usd.empty:
        return []
    pct = f"{plan.confidence * 100:g}%"
    lines = [
        "",
        f"goodput per dollar and per kWh (goodput x 3600 / price, / rated power; {pct} intervals "
        "from the same resampled replications, not adjusted for multiple comparisons; price and "
        "power as in the spec or its presets)",
    ]
    kwh = rows[rows["metric"] == PER_KWH_METRIC]
    per_gpu = rows[rows["metric"] == GOODPUT_METRIC]
    top = max(plan.study.goodput.rates_rps)
    for _, r in usd.iterrows():
        k = kwh[kwh["architecture"] == r["architecture"]]
        g = per_gpu[per_gpu["architecture"] == r["architecture"]]
        for p in plan.param_paths:
            if p in r and not pd.isna(r[p]):
                k = k[k[p] == r[p]]
                g = g[g[p] == r[p]]
        energy = ""
        if not k.empty:
            e = k.iloc[0]
            energy = f"   {e['estimate']:,.0f} req/kWh [{e['ci_low']:,.0f}, {e['ci_high']:,.0f}]"
        arch = plan.scenarios[0].scenario.architectures[r["architecture"]]
        if not g.empty and g["estimate"].iloc[0] * gpus(arch) >= top:
            energy += "  (lower bounds: the SLO is met at every rate tried)"
        lines.append(
            f"    {r['architecture']:<16} {r['estimate']:,.0f} req/$ "
            f"[{r['ci_low']:,.0f}, {r['ci_high']:,.0f}]{energy}"
        )
    for _, r in rows[rows["metric"] == PER_USD_RATIO_METRIC].iterrows():
        lo, hi = r["ci_low"], r["ci_high"]
        verdict = ""
        if np.isfinite(lo) and np.isfinite(hi):
            if lo > 1:
                verdict = " (more per dollar)"
            elif hi < 1:
                verdict = " (fewer per dollar)"
            else:
                verdict = " (no clear difference)"
        lines.append(
            f"    {r['architecture']} / {plan.baseline} per dollar: {r['estimate']:.2f}x "
            f"[{lo:.2f}, {hi:.2f}]{verdict}"
        )
    return lines
