"""The answer of `distsim select`: a one-line answer, the ranking table, report.md and its plot.

    best: d44 — mean E2E 0.959 s [0.951, 0.967]; d35 is 3.0% [2.1%, 3.9%] worse; d62
    overloaded; P(correct selection) >= 0.99 within 2%

The first line is the answer (per scenario when there is a sweep); the table below it lists
every candidate with its estimate, interval, replications and status.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from distsim.report.markdown import REPORT_FILE, _plt, _save
from distsim.runner.store import atomic_write_text
from distsim.spec.selection import OBJECTIVES

RANKING_PLOT = "selection_{index}.png"
STATUS_COLOUR = {
    "best": "tab:green",
    "tied": "tab:olive",
    "eliminated": "tab:blue",
    "infeasible": "tab:orange",
    "unstable": "tab:red",
}


def _decimals(x: float) -> int:
    """Decimals that show three significant digits of `x` (none at 100 and above)."""
    if not math.isfinite(x) or x == 0:
        return 3
    return max(0, 2 - math.floor(math.log10(abs(x))))


def _num(x: float, unit: str = "", like: float | None = None) -> str:
    if not math.isfinite(x):
        return "—"
    d = _decimals(x if like is None else like)
    text = f"{x:,.{d}f}"
    return f"{text} {unit}".rstrip()


def _iv(lo: float, hi: float, like: float | None = None) -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "[—]"
    ref = like if like is not None and math.isfinite(like) else max(abs(lo), abs(hi))
    return f"[{_num(lo, like=ref)}, {_num(hi, like=ref)}]"


def _pct(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{x * 100:.1f}%"


def _worse(r: Any, goal: str = "minimize") -> str:
    """How far behind the best: X/X_best - 1 when minimising ("worse"), 1 - X/X_best when
    maximising ("lower"); the stored figure is X_best/X - 1, mapped by 1 - 1/(1 + w)."""
    if goal == "maximize":
        low, mid, high = (1 - 1 / (1 + w) if math.isfinite(w) else w for w in
                          (r.rel_low, r.rel_worse, r.rel_high))  # fmt: skip
        return f"{_pct(mid)} [{_pct(low)}, {_pct(high)}]"
    return f"{_pct(r.rel_worse)} [{_pct(r.rel_low)}, {_pct(r.rel_high)}]"


def behind(goal: str) -> str:
    return "lower" if goal == "maximize" else "worse"


def answer_line(sel: Any) -> str:
    """The one-line answer for one scenario."""
    obj = OBJECTIVES[sel.objective]
    parts: list[str] = []
    by = {s: [r for r in sel.ranking if r.status == s] for s in STATUS_COLOUR}
    if by["best"]:
        b = by["best"][0]
        parts.append(
            f"best: {b.architecture} — {obj.label} {_num(b.estimate, obj.unit)} "
            f"{_iv(b.ci_low, b.ci_high, b.estimate)}"
        )
    else:
        parts.append("no candidate can be chosen")
    for r in by["tied"]:
        parts.append(
            f"{r.architecture} tied (within {sel.indifference:.0%}: {_worse(r, sel.goal)})"
        )
    if by["eliminated"]:
        r = by["eliminated"][0]
        if math.isfinite(r.rel_low) and r.rel_low > 0:
            parts.append(f"{r.architecture} is {_worse(r, sel.goal)} {behind(sel.goal)}")
        else:  # screened out, but its marginal interval cannot tell it from the best
            parts.append(
                f"{r.architecture} eliminated ({_worse(r, sel.goal)} {behind(sel.goal)}; "
                "the interval includes 0)"
            )
        more = len(by["eliminated"]) - 1
        if more:
            parts.append(f"{more} more eliminated")
    if by["unstable"]:
        parts.append(f"{', '.join(r.architecture for r in by['unstable'])} overloaded")
    if by["infeasible"]:
        names = ", ".join(f"{r.architecture} ({r.note})" for r in by["infeasible"])
        parts.append(f"infeasible: {names}")
    if not by["best"]:
        pass  # nothing was selected: no probability to state
    elif sel.decision is not None and sel.decision.capped:
        parts.append("stopped at the replication cap: no guarantee")
    else:
        parts.append(
            f"P(correct selection) >= {sel.confidence:g} within {sel.indifference * 100:g}%"
        )
    head = parts[0] + (" — " if not by["best"] else "; ")
    return head + "; ".join(parts[1:]) if len(parts) > 1 else parts[0]


def table_lines(sel: Any) -> list[str]:
    obj = OBJECTIVES[sel.objective]
    unit = f" ({obj.unit})" if obj.unit else ""
    head = (
        f"  {'architecture':<14} {'estimate' + unit:>14} {'interval':>20} {'reps':>5}  "
        f"{'status':<10}  {behind(sel.goal)} than the best"
    )
    lines = [head]
    for r in sel.ranking:
        worse = _worse(r, sel.goal) if math.isfinite(r.rel_worse) else ""
        if r.status == "infeasible":
            worse = f"violates {r.note}"
        elif r.status == "unstable":
            worse = r.note
        lines.append(
            f"  {r.architecture:<14} {_num(r.estimate):>14} "
            f"{_iv(r.ci_low, r.ci_high, r.estimate):>20} "
            f"{r.replications:>5}  {r.status:<10}  {worse}"
        )
    return lines


def terminal_lines(result: Any) -> list[str]:
    """Answer lines first (one per scenario), then each scenario's table and notes."""
    many = len(result.scenarios) > 1
    lines = []
    for sel in result.scenarios:
        prefix = f"scenario {sel.scenario.label()}: " if many else ""
        lines.append(prefix + answer_line(sel))
    for sel in result.scenarios:
        obj = OBJECTIVES[sel.objective]
        lines.append("")
        lines.append(
            f"{result.study.name} · scenario {sel.scenario.label()} · {sel.goal} "
            f"{obj.label} · indifference {sel.indifference:.0%} · confidence "
            f"{sel.confidence:g} · {sel.replications_used} replications"
        )
        lines.extend(table_lines(sel))
        for c in sel.constraints:
            if c["decision"] != "met":
                lines.append(
                    f"  constraint {c['architecture']}: {c['metric']} {c['bound']} "
                    f"{c['threshold']:g}: {_num(c['estimate'])} "
                    f"{_iv(c['ci_low'], c['ci_high'], c['estimate'])}"
                    f" ({c['replications']} reps): {c['decision']}"
                )
        lines.extend(f"  note: {n}" for n in sel.notes)
    lines.append("")
    lines.extend(footnote(sel) for sel in result.scenarios[:1])
    return lines


def footnote(sel: Any) -> str:
    """What the intervals of the table are."""
    if OBJECTIVES[sel.objective].per is not None:
        return (
            "intervals: rates between the last probe significantly meeting and the first "
            "significantly missing the attainment target, simultaneous over candidates and looks "
            "(docs/selection.md); 'lower than the best' from those intervals; reps: replications "
            "over all probes"
        )
    return (
        "intervals: mean over replications, t interval at the study's confidence; "
        f"'{behind(sel.goal)} than the best': geometric-mean ratio over common replications, "
        "simultaneous interval"
    )


def ranking_plot(sel: Any, path: Path) -> bool:
    """Each candidate's estimate and interval, coloured by status, with the indifference zone
    around the best shaded."""
    rows = [r for r in sel.ranking if math.isfinite(r.estimate)]
    if not rows:
        return False
    obj = OBJECTIVES[sel.objective]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.38 * len(rows) + 1.4))
    y = np.arange(len(rows))[::-1]
    ranked = [r for r in rows if r.status != "unstable"] or rows
    ends = [v for r in ranked for v in (r.estimate, r.ci_low, r.ci_high) if math.isfinite(v)]
    lo, hi = min(ends), max(ends)
    pad = 0.08 * (hi - lo) or 0.05 * abs(hi) or 1.0
    ax.set_xlim(lo - pad, hi + 3 * pad)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    for yi, r in zip(y, rows, strict=True):
        colour = STATUS_COLOUR[r.status]
        if r.status == "unstable" and r not in ranked:
            ax.annotate(f"overloaded: {_num(r.estimate, obj.unit)} →", (hi + 2.9 * pad, yi),
                        ha="right", va="center", fontsize=7, color=colour)  # fmt: skip
            continue
        if math.isfinite(r.ci_low) and math.isfinite(r.ci_high):
            ax.plot([r.ci_low, r.ci_high], [yi, yi], color=colour, lw=2)
        ax.scatter([r.estimate], [yi], color=colour, zorder=3, s=22)
    best = next((r for r in rows if r.status == "best"), None)
    if best is not None:
        rho = sel.indifference
        edge = best.estimate * (1 + rho) if sel.goal == "minimize" else best.estimate / (1 + rho)
        ax.axvspan(min(best.estimate, edge), max(best.estimate, edge), color="tab:green",
                   alpha=0.12, label=f"within {rho:.0%} of the best")  # fmt: skip
        ax.legend(loc="upper right", fontsize=7)
    ax.set_yticks(y, [f"{r.architecture} ({r.status}, n={r.replications})" for r in rows],
                  fontsize=8)  # fmt: skip
    unit = f" ({obj.unit})" if obj.unit else ""
    what = (
        "search estimate with simultaneous interval"
        if obj.per is not None
        else f"mean with {sel.confidence:.0%} interval"
    )
    ax.set_xlabel(f"{obj.label}{unit}: {what}")
    ax.set_title(f"{sel.goal} {obj.label}: ranking", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return True


def markdown_lines(result: Any) -> list[str]:
    """The selection section of report.md (plots are written next to it)."""
    lines = ["## Selection", ""]
    for sel in result.scenarios:
        lines.append(f"**{answer_line(sel)}**")
        lines.append("")
    for i, sel in enumerate(result.scenarios):
        obj = OBJECTIVES[sel.objective]
        lines += [
            f"### Scenario {sel.scenario.label()}",
            "",
            f"Objective: {sel.goal} {obj.label}; indifference {sel.indifference:.0%} "
            f"(relative); confidence {sel.confidence:g}; {sel.replications_used} replications "
            "in all. Procedure: KN (Kim & Nelson 2001) on log values with common random "
            "numbers; see docs/selection.md.",
            "",
            f"| architecture | estimate | interval | replications | status | "
            f"{behind(sel.goal)} than the best |",
            "|---|---|---|---|---|---|",
        ]
        for r in sel.ranking:
            worse = _worse(r, sel.goal) if math.isfinite(r.rel_worse) else (r.note or "")
            lines.append(
                f"| {r.architecture} | {_num(r.estimate, obj.unit)} | "
                f"{_iv(r.ci_low, r.ci_high, r.estimate)} | {r.replications} | {r.status} | "
                f"{worse} |"
            )
        lines.append("")
        plot = RANKING_PLOT.format(index=i)
        if ranking_plot(sel, result.out_dir / plot):
            lines += [f"![ranking]({plot})", ""]
        lines += [f"- {n}" for n in sel.notes]
    return lines


def write_report(result: Any) -> Path:
    """report.md of a selection: the selection section with its plots."""
    text = "\n".join([f"# {result.study.name}: which deployment?", "", *markdown_lines(result)])
    path = result.out_dir / REPORT_FILE
    atomic_write_text(path, text + "\n")
    return path
