"""The study's written report: report.md with plots, and summary.json for scripts.

Pure function of stored results (plan, rows, aggregate tables): `distsim run` writes it when a
study ends and `distsim report DIR` rebuilds it from the results folder. Plots are PNG files drawn
with matplotlib's Agg backend (no display needed):

- forest.png: every latency comparison's relative difference with its interval;
- sweep_<metric>.png (sweeps only): the metric against the swept parameter, one line and shaded
  interval band per architecture;
- cdf_<scenario>.png: the pooled TTFT distribution (CDF) per architecture, from the sketches,
  for at most `MAX_DISTRIBUTION_PLOTS` scenarios (`plotted_scenarios`), however large the sweep.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from distsim.report.terminal import (
    FLAG_TEXT,
    auto_warmup_text,
    metric_label,
    precision_lines,
    replications_text,
    used_flags,
)
from distsim.runner import precision
from distsim.runner.payload import SKETCH_COLUMNS
from distsim.runner.plan import Plan
from distsim.runner.store import atomic_write_bytes, atomic_write_text
from distsim.stats.cost import hardware_lines
from distsim.stats.cost import report_lines as cost_lines
from distsim.stats.sketch import LogHistogram, from_json

REPORT_FILE = "report.md"
JSON_FILE = "summary.json"
FOREST_FILE = "forest.png"
PLOT_METRICS = ("ttft_mean_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s")


def _save(fig: Any, path: Path) -> None:
    """Render a figure and write it atomically (a kill mid-write leaves no broken PNG)."""
    buf = io.BytesIO()
    fig.savefig(buf, dpi=110)
    atomic_write_bytes(path, buf.getvalue())


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.4g}"


def _pct(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{x * 100:+.1f}%"


def forest_plot(detail: pd.DataFrame, path: Path) -> bool:
    """Relative differences (%) with intervals, one line per scenario x architecture x metric."""
    rows = detail[detail["metric"].isin(PLOT_METRICS)] if len(detail) else detail
    if rows.empty or "rel_ci_low" not in rows.columns:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    y = np.arange(len(rows))[::-1]
    est = rows["rel_diff"].to_numpy(dtype=float) * 100
    lo = rows["rel_ci_low"].to_numpy(dtype=float) * 100
    hi = rows["rel_ci_high"].to_numpy(dtype=float) * 100
    sig = rows["significant"].to_numpy(dtype=bool)
    ax.errorbar(est, y, xerr=[est - lo, hi - est], fmt="none", ecolor="grey", capsize=2)
    ax.scatter(est, y, c=np.where(sig, "tab:red", "tab:blue"), zorder=3, s=18)
    ax.axvline(0, color="black", lw=0.8)
    labels = [
        f"{r.scenario_id} {r.architecture} {metric_label(r.metric)}" for r in rows.itertuples()
    ]
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel("relative difference to baseline (%)  — red: significant after adjustment")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return True


def sweep_plots(summary: pd.DataFrame, plan: Plan, out_dir: Path) -> list[str]:
    """One PNG per plotted metric for the first numeric swept parameter."""
    numeric = [
        p for p in plan.param_paths if p in summary and pd.api.types.is_numeric_dtype(summary[p])
    ]
    if not numeric or summary.empty:
        return []
    param = numeric[0]
    plt = _plt()
    files = []
    for metric in PLOT_METRICS:
        rows = summary[summary["metric"] == metric]
        if rows.empty:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for arch in plan.architectures:
            a = rows[rows["architecture"] == arch].groupby(param).first().sort_index()
            if a.empty:
                continue
            x = a.index.to_numpy(dtype=float)
            ax.plot(x, a["estimate"], marker="o", label=arch)
            ax.fill_between(x, a["ci_low"], a["ci_high"], alpha=0.25)
        ax.set_xlabel(param)
        ax.set_ylabel(f"{metric_label(metric)} (s)")
        ax.legend()
        fig.tight_layout()
        name = f"sweep_{metric}.png"
        _save(fig, out_dir / name)
        plt.close(fig)
        files.append(name)
    return files


# Distribution plots drawn at most, whatever the number of scenarios (one PNG each).
MAX_DISTRIBUTION_PLOTS = 6


def plotted_scenarios(
    plan: Plan, detail: pd.DataFrame, limit: int = MAX_DISTRIBUTION_PLOTS
) -> list[str]:
    """The scenarios that get a distribution plot: all when there are at most `limit`; else the
    sweep's first and last point and the scenarios with the lowest and highest relative P99 TTFT
    difference of each other architecture to the baseline (in plan order)."""
    ids = [ps.id for ps in plan.scenarios]
    if len(ids) <= limit:
        return ids
    chosen = {ids[0], ids[-1]}
    d = detail[detail["metric"] == "ttft_p99_s"] if len(detail) else detail
    for _, g in d.groupby("architecture") if len(d) else []:
        rel = g["rel_diff"].astype(float)
        if rel.notna().any():
            chosen |= {g.loc[rel.idxmin(), "scenario_id"], g.loc[rel.idxmax(), "scenario_id"]}
    return [sid for sid in ids if sid in chosen][:limit]


def cdf_plot(rows: pd.DataFrame, plan: Plan, scenario_id: str, path: Path) -> bool:
    """Pooled TTFT CDF per architecture of one scenario (log time axis)."""
    column = SKETCH_COLUMNS["ttft"]
    if column not in rows.columns:
        return False
    cell_rows = rows[rows["scenario_id"] == scenario_id]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    for arch in plan.architectures:
        texts = cell_rows.loc[cell_rows["architecture"] == arch, column].dropna()
        if texts.empty:
            continue
        pooled = LogHistogram.merge(from_json(t) for t in texts)
        x, f = pooled.cdf_points()
        if x.size:
            ax.step(np.maximum(x, 1e-6), f, where="post", label=arch)
            drawn = True
    if drawn:
        ax.set_xscale("log")
        ax.set_xlabel("TTFT (s)")
        ax.set_ylabel("fraction of requests")
        ax.legend()
        fig.tight_layout()
        _save(fig, path)
    plt.close(fig)
    return drawn


def _by_scenario(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    if frame.empty or "scenario_id" not in frame.columns:
        return {}
    return {str(k): g for k, g in frame.groupby("scenario_id", sort=False)}


def _warm(warmup_s: float | str) -> str:
    if warmup_s == "auto":
        return "auto (resolved per scenario by a pilot, below)"
    return f"{float(warmup_s):g}"


def _table(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for rec in frame[columns].itertuples(index=False):
        cells = [_fmt(v) if isinstance(v, float) else str(v) for v in rec]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _precision_json(plan: Plan, status: pd.DataFrame) -> dict[str, Any] | None:
    p = getattr(plan.study, "precision", None)
    if p is None:
        return None
    return {**p.model_dump(mode="json"), "cells": _records(status)}


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records")) if len(frame) else []


def write_report(
    out_dir: Path,
    plan: Plan,
    rows: pd.DataFrame,
    summary: pd.DataFrame,
    detail: pd.DataFrame,
    diag: pd.DataFrame,
    notes: list[str] | None = None,
) -> Path:
    """Write report.md, its PNG plots and summary.json into `out_dir`; return report.md."""
    out_dir = Path(out_dir)
    study = plan.study
    lines = [f"# Study `{study.name}`", ""]
    lines += [
        f"{len(plan.scenarios)} scenario(s) x {len(plan.architectures)} architecture(s) "
        f"({', '.join(plan.architectures)}; baseline `{plan.baseline}`), "
        f"{replications_text(plan)} each, confidence {plan.confidence:g}, "
        f"multiple comparisons: {getattr(study, 'multiple_comparisons', 'holm')}.",
        "",
        f"Run: duration_s {study.duration_s:g}, warmup_s {_warm(study.warmup_s)}, "
        f"seed {study.seed}; arrival {study.workload.arrival.model_dump()}."
        if getattr(study.workload, "arrival", None) is not None
        else f"Run: duration_s {study.duration_s:g}, warmup_s {_warm(study.warmup_s)}.",
        "",
        "Quantiles (P50/P90/P99) are pooled over every measured request of every replication; "
        "their intervals take their spread from the replications "
        + (
            "(a BCa bootstrap resampling replications)"
            if getattr(study, "quantile_intervals", "sectioning") == "bootstrap"
            else "(sectioning)"
        )
        + ", never from individual requests. Means use Student t over replications; comparisons "
        "are paired over the same replications (common random numbers; quantile differences by "
        "sectioning).",
        "",
    ]
    prec = precision.status(summary, plan)
    files: dict[str, Any] = {}
    plotted = plotted_scenarios(plan, detail)
    # A large sweep's forest plot shows the plotted scenarios only (one line per comparison).
    forest = (
        detail
        if len(plotted) == len(plan.scenarios) or detail.empty
        else (detail[detail["scenario_id"].isin(plotted)])
    )
    if forest_plot(forest, out_dir / FOREST_FILE):
        files["forest"] = FOREST_FILE
    files["sweep"] = sweep_plots(summary, plan, out_dir)
    files["cdf"] = {}
    for sid in plotted:
        name = f"cdf_{sid}.png"
        if not rows.empty and cdf_plot(rows, plan, sid, out_dir / name):
            files["cdf"][sid] = name
    if len(plan.scenarios) > len(files["cdf"]) and files["cdf"]:
        lines += [
            f"TTFT distribution plots and the forest plot cover {len(files['cdf'])} of "
            f"{len(plan.scenarios)} scenarios: the sweep's first and last, and those with the "
            "lowest and highest relative P99 TTFT difference to the baseline; the sweep plots "
            "and the tables cover every scenario.",
            "",
        ]

    # Each table split by scenario once (a scan per scenario is quadratic in large sweeps).
    by_summary, by_prec = _by_scenario(summary), _by_scenario(prec)
    by_diag, by_detail = _by_scenario(diag), _by_scenario(detail)
    for ps in plan.scenarios:
        params = ", ".join(f"{k} = {v}" for k, v in ps.params.items()) or "the spec as written"
        lines += [f"## Scenario `{ps.id}` ({params})", ""]
        if ps.warmup_auto is not None:
            lines += [auto_warmup_text(ps.warmup_auto) + ".", ""]
        lines += [f"- hardware {h}" for h in hardware_lines(ps.scenario, list(plan.architectures))]
        lines.append("")
        s = by_summary.get(ps.id, summary.iloc[:0])
        if len(s):
            s = s[
                s["metric"].str.startswith(
                    ("ttft_", "e2e_", "offered_load_", "n_requests", "cost_usd_per_hour")
                )
            ]
            lines += _table(
                s, ["architecture", "metric", "estimate", "ci_low", "ci_high", "n", "flags"]
            )
            lines.append("")
        pst = by_prec.get(ps.id, prec.iloc[:0])
        if len(pst):
            lines += [f"- {line}." for line in precision_lines(plan, pst)] + [""]
            lines += _table(pst, ["architecture", "metric", "rel_half_width", "n", "met", "capped"])
            lines.append("")
        d = by_diag.get(ps.id, diag.iloc[:0])
        for rec in d.itertuples():
            if rec.unstable:
                lines.append(
                    f"- **unstable**: `{rec.architecture}` offered load {rec.offered_load:.3f} "
                    ">= 1; excluded from significance testing."
                )
            if rec.warmup_short:
                lines.append(
                    f"- **warmup_short**: `{rec.architecture}` MSER-5 detects a transient up to "
                    f"{rec.warmup_detected_s:.1f} s; warmup_s is {rec.warmup_s:g} s."
                )
            if rec.ttft_growing:
                lines.append(
                    f"- TTFT of `{rec.architecture}` keeps growing through the measured window "
                    f"({rec.ttft_trend_rel * 100:+.0f}% from first to second half)."
                )
        c = by_detail.get(ps.id, detail.iloc[:0])
        for rec in c.itertuples():
            if not str(rec.metric).startswith(("ttft_", "e2e_")):
                continue
            verdict = "significant" if rec.significant else "no significant difference"
            padj = "not tested" if not math.isfinite(rec.p_adjusted) else f"{rec.p_adjusted:.3g}"
            rel = (
                f"{_pct(rec.rel_diff)} [{_pct(rec.rel_ci_low)}, {_pct(rec.rel_ci_high)}]"
                if hasattr(rec, "rel_ci_low")
                else _pct(rec.rel_diff)
            )
            lines.append(
                f"- {rec.architecture} vs {rec.baseline}, {metric_label(rec.metric)}: {rel}, "
                f"p = {rec.p_value:.3g}, adjusted p = {padj}: **{verdict}**"
            )
        if ps.id in files["cdf"]:
            lines += ["", f"![TTFT distribution]({files['cdf'][ps.id]})"]
        lines.append("")
    money = cost_lines(plan, summary)
    if money:
        lines += ["## Goodput per dollar and per kWh", "", "```text", *money[1:], "```", ""]
    if "forest" in files:
        lines += ["## Relative differences", "", f"![forest plot]({FOREST_FILE})", ""]
    for name in files["sweep"]:
        lines += [f"![{name}]({name})", ""]
    used = used_flags(summary)
    lines += ["## Flags", ""]
    lines += [f"- `{f}`: {FLAG_TEXT.get(f, f)}" for f in used] or ["No flags: no warnings apply."]
    for note in notes or []:
        lines.append(f"- note: {note}")
    lines.append("")
    report = out_dir / REPORT_FILE
    atomic_write_text(report, "\n".join(lines))
    payload = {
        "study": study.name,
        "confidence": plan.confidence,
        "replications": plan.replications,
        "multiple_comparisons": getattr(study, "multiple_comparisons", "holm"),
        "flags": {f: FLAG_TEXT.get(f, f) for f in used},
        "summary": _records(summary),
        "precision": _precision_json(plan, prec),
        "warmup_auto": {
            ps.id: ps.warmup_auto for ps in plan.scenarios if ps.warmup_auto is not None
        },
        "comparisons": _records(detail),
        "diagnostics": _records(diag),
        "plots": files,
    }
    atomic_write_text(out_dir / JSON_FILE, json.dumps(payload, indent=1))
    return report
