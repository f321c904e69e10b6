"""The study's written report: report.md with plots, and summary.json for scripts.

Pure function of stored results (plan, rows, aggregate tables): `distsim run` writes it when a
study ends and `distsim report DIR` rebuilds it from the results folder. Plots are PNG files drawn
with matplotlib's Agg backend (no display needed):

- forest.png: every latency comparison's relative difference with its interval;
- sweep_<metric>.png and heatmap_<metric>.png (sweeps only; `distsim.report.sweep_plots`): the
  metric against the first swept parameter with interval bands, and with two or more swept
  parameters the relative difference over two of them, verdict per cell;
- cdf_<scenario>.png: the pooled TTFT distribution (CDF) per architecture, from the sketches,
  for at most `MAX_DISTRIBUTION_PLOTS` scenarios (`plotted_scenarios`), however large the sweep.

A sweep of more than `LARGE_SWEEP_SCENARIOS` scenarios is summarised over its swept parameters
(the verdict per swept value in one table per parameter, the plots above); only the plotted
scenarios get a block of their own, every number stays in summary.csv and comparisons.csv.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from distsim.report.sweep_plots import heatmaps, sweep_plots
from distsim.report.sweeps import evenly, scenario_text, sweep_axes, value_table
from distsim.report.terminal import (
    FLAG_TEXT,
    LARGE_SWEEP_SCENARIOS,
    _is_time,
    auto_warmup_text,
    caution,
    flag_lines,
    metric_label,
    precision_lines,
    primary_metrics,
    replications_text,
    used_flags,
    verdict,
)
from distsim.runner import precision
from distsim.runner.payload import SKETCH_COLUMNS
from distsim.runner.plan import Plan
from distsim.runner.store import atomic_write_bytes, atomic_write_chunks, atomic_write_text
from distsim.spec.study import FIRST_TOKEN_TEXT
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


def verdict_kind(significant: bool, tested: bool, p_value: float, alpha: float) -> str:
    """A comparison's colour class in the forest plot. Its interval excludes 0 exactly when its
    own p-value is below alpha, so a row significant before but not after the adjustment gets
    its own class ("alone"): a bar clear of 0 is never drawn as simply "not significant"."""
    if not tested:
        return "not tested"
    if significant:
        return "significant"
    return "alone" if p_value < alpha else "not significant"


def forest_plot(detail: pd.DataFrame, plan: Plan, path: Path) -> bool:
    """Each TTFT comparison's relative difference with its interval: rows labelled by the swept
    values and the metric, coloured significant / not significant / not tested."""
    rows = detail[detail["metric"].isin(PLOT_METRICS)] if len(detail) else detail
    if rows.empty or "rel_ci_low" not in rows.columns:
        return False
    plt = _plt()
    params = {ps.id: ps.params for ps in plan.scenarios}
    others = [a for a in plan.architectures if a != plan.baseline]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.9))
    y = np.arange(len(rows))[::-1]
    est = rows["rel_diff"].to_numpy(dtype=float) * 100
    lo = rows["rel_ci_low"].to_numpy(dtype=float) * 100
    hi = rows["rel_ci_high"].to_numpy(dtype=float) * 100
    sig = rows["significant"].to_numpy(dtype=bool)
    tested = rows["tested"].to_numpy(dtype=bool) if "tested" in rows else np.ones(len(rows), bool)
    p = rows["p_value"].to_numpy(dtype=float) if "p_value" in rows else np.ones(len(rows))
    alpha = 1 - plan.confidence
    kind = np.array([verdict_kind(*v, alpha) for v in zip(sig, tested, p, strict=True)])
    adj = _adjust(plan)
    colours = {"significant": "tab:red", "alone": "tab:orange", "not significant": "tab:blue",
               "not tested": "0.6"}  # fmt: skip
    names = {"alone": f"significant alone, not after {adj}",
             "not tested": "not tested (overloaded)"}  # fmt: skip
    kinds = {names.get(k, k): (c, kind == k) for k, c in colours.items()}
    for label, (colour, mask) in kinds.items():
        if not mask.any():  # still in the legend (in this order): the colours are learnt once
            ax.errorbar([], [], xerr=[[], []], fmt="o", color=colour, ms=4, label=label)
            continue
        if mask.any():
            ax.errorbar(
                est[mask], y[mask], xerr=[est[mask] - lo[mask], hi[mask] - est[mask]],
                fmt="o", color=colour, ecolor=colour, capsize=2, ms=4, label=label,
            )  # fmt: skip
    ax.axvline(0, color="black", lw=0.8)
    labels = []
    for r in rows.itertuples():
        where = scenario_text(params.get(r.scenario_id, {}))
        who = f"{r.architecture}: " if len(others) > 1 else ""
        labels.append(f"{who}{metric_label(r.metric)}" + (f" · {where}" if where else ""))
    ax.set_yticks(y, labels, fontsize=8)
    pct = f"{plan.confidence * 100:g}%"
    who = others[0] if len(others) == 1 else "other"
    ax.set_xlabel(
        f"relative difference to {plan.baseline} (%), {pct} interval of each test alone\n"
        f"← {who} faster        |        {who} slower →"
    )
    ax.set_title(f"{plan.study.name}: TTFT, {' / '.join(others)} vs {plan.baseline}")
    ax.legend(loc="best", fontsize=8, title=f"verdict ({adj}-adjusted p)", title_fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return True


def _adjust(plan: Plan) -> str:
    method = str(getattr(plan.study, "multiple_comparisons", "holm"))
    return {"holm": "Holm", "bonferroni": "Bonferroni", "bh": "BH", "none": "not"}.get(
        method, method
    )


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
    """Pooled TTFT tail per architecture of one scenario: the share of requests slower than t
    (complementary CDF) on log-log axes, so P90 and P99 are visible, with their levels marked."""
    column = SKETCH_COLUMNS["ttft"]
    if column not in rows.columns:
        return False
    cell_rows = rows[rows["scenario_id"] == scenario_id]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    drawn = False
    n_min = math.inf
    for arch in plan.architectures:
        texts = cell_rows.loc[cell_rows["architecture"] == arch, column].dropna()
        if texts.empty:
            continue
        pooled = LogHistogram.merge(from_json(t) for t in texts)
        x, f = pooled.cdf_points()
        if x.size:
            tail = 1.0 - np.asarray(f, dtype=float)
            keep = tail > 0
            n = float(pooled.count.sum() + pooled.zero_count)
            n_min = min(n_min, n)
            ax.step(np.maximum(x[keep], 1e-6), tail[keep], where="post",
                    label=f"{arch} ({texts.size} replications, {n:,.0f} requests)")  # fmt: skip
            drawn = True
    if drawn:
        ax.set_xscale("log")
        ax.set_yscale("log")
        if math.isfinite(n_min):
            ax.set_ylim(bottom=max(0.5 / n_min, 1e-6), top=1.05)
        for level, name in ((0.5, "P50"), (0.1, "P90"), (0.01, "P99")):
            ax.axhline(level, color="0.7", lw=0.6, ls="--")
            ax.annotate(name, (1.0, level), xycoords=("axes fraction", "data"), fontsize=7,
                        ha="right", va="bottom", color="0.4")  # fmt: skip
        ps = next((p for p in plan.scenarios if p.id == scenario_id), None)
        where = scenario_text(ps.params) if ps is not None else ""
        ax.set_title(f"{plan.study.name}: TTFT tail" + (f" ({where})" if where else ""))
        ax.set_xlabel("TTFT t (s, log scale)")
        ax.set_ylabel("share of requests with TTFT > t")
        ax.legend(fontsize=8)
        fig.tight_layout()
        _save(fig, path)
    plt.close(fig)
    return drawn


# Rows of a verdict-per-value table in report.md at most (a sweep of 10,000 rates).
REPORT_TABLE_ROWS = 100


def sweep_section(
    plan: Plan, detail: pd.DataFrame, metrics: list[str], files: dict[str, Any]
) -> list[str]:
    """The sweep read over its swept parameters: per parameter, one table of the verdict at each
    value (over the other parameters' values), then the heat maps and sweep plots."""
    axes, _ = sweep_axes(plan)
    if not axes or detail.empty:
        return []
    others = [a for a in plan.architectures if a != plan.baseline]
    adj = _adjust(plan)
    lines = [
        "## The sweep by swept value",
        "",
        f"{len(plan.scenarios)} scenarios over {len(axes)} swept parameter(s): "
        + "; ".join(f"{ax.label()} ({len(ax.values)} values)" for ax in axes)
        + f". Each cell: the relative difference to `{plan.baseline}` with its "
        f"{plan.confidence * 100:g}% interval and verdict where one scenario has that value, "
        f"else how many of the scenarios with that value are significantly lower / higher "
        f"(after {adj} adjustment), not significant after it (`n.s. after adj.`: p < "
        f"{1 - plan.confidence:g} alone), not significant, or not tested (overloaded).",
        "",
    ]
    for a, ax in enumerate(axes):
        table = value_table(plan, detail, metrics, a)
        if table.empty:
            continue
        cols = [(arch, m) for arch in others for m in metrics if (arch, m) in table.columns]
        head = [ax.label()] + [
            (f"{arch} " if len(others) > 1 else "") + metric_label(m) for arch, m in cols
        ]
        n = len(table)
        if n > REPORT_TABLE_ROWS:  # evenly spaced, the ends kept; every value in the CSVs
            table = table.iloc[evenly(n, REPORT_TABLE_ROWS)]
            lines += [
                f"{REPORT_TABLE_ROWS} of the {n} values of {ax.label()}, evenly spaced "
                "(every scenario is in comparisons.csv):",
                "",
            ]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for rec in table.to_dict("records"):
            lines.append("| " + " | ".join([rec["value"]] + [rec[c] for c in cols]) + " |")
        lines.append("")
    for name in files.get("heatmap", []):
        lines += [f"![{name}]({name})", ""]
    if files.get("heatmap"):
        for name in files.get("sweep", []):
            lines += [f"![{name}]({name})", ""]
    return lines


def _by_scenario(frame: pd.DataFrame, keep: set[str] | None = None) -> dict[str, pd.DataFrame]:
    if frame.empty or "scenario_id" not in frame.columns:
        return {}
    if keep is not None:
        frame = frame[frame["scenario_id"].isin(keep)]
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
    # (the headline of each scenario is its first lines; the terminal prints the same sentences)
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
            else "(Woodruff's interval: each replication's share of requests at or below the "
            "pooled quantile)"
        )
        + ", never from individual requests, and never reach below 0. Means use Student t over "
        "replications, on the log scale for positive values. Each comparison is one paired test "
        "over the same replications (common random numbers): on the log ratio for positive "
        "metrics; its interval is the percentage's, and the difference's interval inverts the "
        "same test, so the p-value and both intervals agree on whether 0 is excluded.",
        "",
        FIRST_TOKEN_TEXT[str(getattr(study, "first_token", "prefill"))] + ".",
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
    if forest_plot(forest, plan, out_dir / FOREST_FILE):
        files["forest"] = FOREST_FILE
    files["sweep"] = sweep_plots(summary, plan, out_dir)
    engine = str(getattr(plan.scenarios[0].scenario, "engine", "exclusive"))
    primary = [
        m for m in primary_metrics(plan, engine) if not len(detail) or m in set(detail["metric"])
    ]
    files["heatmap"] = heatmaps(plan, detail, primary, out_dir)
    files["cdf"] = {}
    for sid in plotted:
        name = f"cdf_{sid}.png"
        if not rows.empty and cdf_plot(rows, plan, sid, out_dir / name):
            files["cdf"][sid] = name
    large = len(plan.scenarios) > LARGE_SWEEP_SCENARIOS
    if len(plan.scenarios) > len(files["cdf"]) and files["cdf"]:
        lines += [
            f"TTFT distribution plots and the forest plot cover {len(files['cdf'])} of "
            f"{len(plan.scenarios)} scenarios: the sweep's first and last, and those with the "
            "lowest and highest relative P99 TTFT difference to the baseline; the sweep plots "
            + ("and heat maps " if files["heatmap"] else "")
            + (
                "and the tables cover every scenario."
                if not large
                else "and the tables per swept value cover every scenario, summary.csv and "
                "comparisons.csv hold every number. Only those scenarios get a section below."
            ),
            "",
        ]
    lines += sweep_section(plan, detail, primary, files)

    # Each table split by scenario once (a scan per scenario is quadratic in large sweeps).
    shown = [ps for ps in plan.scenarios if ps.id in set(plotted)] if large else plan.scenarios
    keep = {ps.id for ps in shown} if large else None  # split only the scenarios shown
    by_summary, by_prec = _by_scenario(summary, keep), _by_scenario(prec, keep)
    by_diag, by_detail = _by_scenario(diag, keep), _by_scenario(detail, keep)
    for ps in shown:
        params = scenario_text(ps.params) or "the spec as written"
        lines += [f"## Scenario `{ps.id}` ({params})", ""]
        if ps.warmup_auto is not None:
            lines += [auto_warmup_text(ps.warmup_auto) + ".", ""]
        lines += [f"- hardware {h}" for h in hardware_lines(ps.scenario, list(plan.architectures))]
        lines.append("")
        c = by_detail.get(ps.id, detail.iloc[:0])
        primary = primary_metrics(plan, str(getattr(ps.scenario, "engine", "exclusive")))
        head = c[c["metric"].isin(primary)] if len(c) else c
        if len(head):
            order = {m: i for i, m in enumerate(primary)}
            head = head.assign(_o=head["metric"].map(order)).sort_values(["_o", "architecture"])
            s = by_summary.get(ps.id, summary.iloc[:0])
            lines += [f"- **{verdict(r, plan)}**{caution(r, s)}" for _, r in head.iterrows()]
            lines.append("")
        s = by_summary.get(ps.id, summary.iloc[:0])
        if len(s):
            s = s.assign(
                metric=s["metric"].map(lambda m: metric_label(m) + (" (s)" if _is_time(m) else "")),
                flags=s["flags"].fillna("").replace("", "—"),
            )
            lines += _table(
                s, ["architecture", "metric", "estimate", "ci_low", "ci_high", "n", "flags"]
            )
            lines.append("")
            for line in flag_lines(by_summary.get(ps.id, summary.iloc[:0])):
                lines.append(f"- {line}")
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
                    f"- **unstable**: {rec.unstable_reason}; its comparisons are not tested."
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
        if len(c):
            lines += ["", "| comparison | difference | interval | relative | relative interval "
                      "| p | adjusted p | verdict |", "|" + "---|" * 8]  # fmt: skip
            for _, r in c.iterrows():
                tested = bool(r.get("tested", True))
                word = (
                    str(r.get("not_tested") or "not tested")
                    if not tested
                    else ("**significant**" if r["significant"] else "no significant difference")
                )
                padj = (
                    f"{r['p_adjusted']:.3g}" if tested and math.isfinite(r["p_adjusted"]) else "—"
                )
                lines.append(
                    f"| {r['architecture']} vs {r['baseline']}, {metric_label(r['metric'])} "
                    f"| {_fmt(r['diff'])} | [{_fmt(r['diff_ci_low'])}, {_fmt(r['diff_ci_high'])}] "
                    f"| {_pct(r['rel_diff'])} "
                    f"| [{_pct(r['rel_ci_low'])}, {_pct(r['rel_ci_high'])}] "
                    f"| {r['p_value']:.3g} | {padj} | {word} |"
                )
        if ps.id in files["cdf"]:
            lines += ["", f"![TTFT distribution]({files['cdf'][ps.id]})"]
        lines.append("")
    money = cost_lines(plan, summary)
    if money:
        lines += ["## Goodput per dollar and per kWh", "", "```text", *money[1:], "```", ""]
    if "forest" in files:
        lines += ["## Relative differences", "", f"![forest plot]({FOREST_FILE})", ""]
    for name in files["sweep"] if not files["heatmap"] else []:
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
        "summary": _TABLE_MARK.format("summary"),
        "precision": _precision_json(plan, prec),
        "warmup_auto": {
            ps.id: ps.warmup_auto for ps in plan.scenarios if ps.warmup_auto is not None
        },
        "comparisons": _TABLE_MARK.format("comparisons"),
        "diagnostics": _TABLE_MARK.format("diagnostics"),
        "plots": files,
    }
    tables = (("summary", summary), ("comparisons", detail), ("diagnostics", diag))
    atomic_write_chunks(out_dir / JSON_FILE, _json_chunks(payload, tables))
    return report


_TABLE_MARK = "\u0000distsim-table:{}"
# Rows of a per-cell table turned into JSON text at a time (summary.json is written in pieces).
_JSON_ROWS = 2048


def _json_chunks(
    payload: dict[str, Any], tables: Iterable[tuple[str, pd.DataFrame]]
) -> Iterator[bytes]:
    """summary.json a piece at a time: `payload` with each table's mark replaced by the table's
    records as pandas writes them (the numbers `_records` would give), `_JSON_ROWS` rows at a
    time. Never one Python dict per cell, nor the whole text at once: at 5,000 scenarios the
    dicts cost the driver ~0.5 GB and the text ~60 MB, twice over (text, then bytes)."""
    rest = json.dumps(payload, indent=1)
    for name, frame in tables:
        head, rest = rest.split(json.dumps(_TABLE_MARK.format(name)), 1)
        yield head.encode("utf-8")
        if not len(frame):
            yield b"[]"
            continue
        for start in range(0, len(frame), _JSON_ROWS):
            text = frame.iloc[start : start + _JSON_ROWS].to_json(orient="records")
            yield (b"," if start else b"[") + text[1:-1].encode("utf-8")
        yield b"]"
    yield rest.encode("utf-8")
