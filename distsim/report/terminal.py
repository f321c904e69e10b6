"""The terminal report: one block per scenario, `estimate ± half-width` per architecture, and a
verdict line per comparison of a latency metric with the baseline.

    disaggregated vs monolithic: P99 TTFT +48% [+39%, +57%], p < 0.001
    disaggregated vs monolithic: mean E2E no significant difference (+1.2% [-0.5%, +2.9%], p = 0.17)

Rendering is a pure function of the plan and the aggregate tables; the text is returned, not
printed, so the CLI, `distsim report` and tests share it.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from rich.console import Console
from rich.padding import Padding
from rich.table import Table

from distsim.runner import precision
from distsim.runner.plan import Plan
from distsim.spec.study import FIRST_TOKEN_TEXT
from distsim.stats.cost import hardware_lines
from distsim.stats.cost import report_lines as cost_lines
from distsim.stats.goodput import report_lines as goodput_lines

# What each name of summary.csv's `flags` column means (terminal, report.md, summary.json).
FLAG_TEXT = {
    "unstable": "overloaded: a queue grows through the run (exclusive engine: offered load >= 1 "
    "on a GPU pool; any engine: TTFT rising by half or more from the first to the second half of "
    "the measured window in every replication), so the numbers depend on the run length; shown, "
    "but its comparisons are not tested",
    "run_too_short": "the replications hold too little measured time for this interval to "
    "cover the truth as often as stated: a quantile whose pooled estimate is visibly biased "
    "(per-replication quantiles against the pooled one, over R - 1, above 0.05 of the "
    "half-width) or whose tail rests on fewer than 12 independent bursts of slow requests in all "
    "replications together, or a mean carried by such a tail (docs/statistics.md) — raise "
    "duration_s to the figure shown, or the replications by the same factor",
    "warmup_short": "warmup_s ends before the start-up transient that MSER-5 detects, or TTFT is "
    "still growing through the measured window — raise warmup_s (or duration_s)",
    "precision_capped": "the precision target (precision.rel_half_width) was not met within "
    "precision.max_replications: the interval is wider than asked — raise max_replications, "
    "loosen the target, or lengthen the runs",
}

# Metrics that get a verdict line: the latency figures every architecture has.
VERDICT_PREFIXES = ("ttft_", "e2e_", "tpot_")

_LABELS = {
    "cost_usd_per_hour": "cost (USD/h, all GPUs)",
    "n_requests": "measured requests",
    "slo_attainment": "SLO attainment",
    "preemptions": "preemptions",
}
_LATENCY = re.compile(r"^(?P<what>[a-z0-9]+)_(?P<stat>mean|max|min|p\d+)_s$")
_POOL_LABELS = {
    "queue_wait_mean_s_": "mean queue wait",
    "utilization_": "utilization",
    "offered_load_": "offered load",
    "batch_size_mean_": "mean batch size",
    "kv_use_mean_": "mean KV use",
}


def metric_label(metric: str) -> str:
    """A reader's name for a metric column, e.g. `ttft_p99_s` -> `P99 TTFT`,
    `ttft_p99_s_class_chat` -> `P99 TTFT (class chat)`."""
    base, sep, cls = metric.partition("_class_")
    if sep and base and cls:
        return f"{metric_label(base)} (class {cls})"
    if metric in _LABELS:
        return _LABELS[metric]
    m = _LATENCY.match(metric)
    if m:
        stat = m["stat"].upper() if m["stat"].startswith("p") else m["stat"]
        return f"{stat} {m['what'].upper()}"
    for prefix, label in _POOL_LABELS.items():
        if metric.startswith(prefix):
            return f"{label} ({metric[len(prefix) :]})"
    return metric


def _is_time(metric: str) -> bool:
    return metric.endswith("_s") or "_s_" in metric


def time_unit(largest_s: float) -> tuple[str, float]:
    """The unit (name, scale) that shows a row of times with the largest around 1 to 1000."""
    if not math.isfinite(largest_s) or largest_s >= 1.0:
        return "s", 1.0
    if largest_s >= 1e-3:
        return "ms", 1e3
    return "µs", 1e6


def format_pm(estimate: float, half_width: float) -> str:
    """`estimate ± half-width`: two significant digits of the half-width, at most four of the
    estimate."""
    if not math.isfinite(estimate):
        return "n/a"
    if not math.isfinite(half_width):
        return f"{estimate:.4g} (no interval)"
    if half_width == 0:
        return f"{estimate:.4g} ± 0"
    by_width = 1 - math.floor(math.log10(half_width))
    by_value = 3 - math.floor(math.log10(abs(estimate))) if estimate != 0 else by_width
    decimals = min(max(0, min(by_width, by_value)), 9)
    return f"{estimate:.{decimals}f} ± {half_width:.{decimals}f}"


def format_interval(estimate: float, low: float, high: float, scale: float = 1.0) -> str:
    """`estimate ± half-width` for a symmetric interval; `estimate [low, high]` for one that is
    not (log-scale intervals of skewed latencies), so no reader sees a negative latency."""
    half = (high - low) / 2.0
    if not (math.isfinite(low) and math.isfinite(high)) or half == 0:
        return format_pm(estimate * scale, half * scale)
    symmetric = abs((high - estimate) - (estimate - low)) <= 0.1 * half
    if symmetric or half <= 1e-3 * abs(estimate):  # no visible asymmetry at 4 digits
        return format_pm(estimate * scale, half * scale)
    by_width = 1 - math.floor(math.log10(half * scale))
    by_value = 3 - math.floor(math.log10(abs(estimate * scale))) if estimate != 0 else by_width
    d = min(max(0, min(by_width, by_value)), 9)
    return f"{estimate * scale:.{d}f} [{low * scale:.{d}f}, {high * scale:.{d}f}]"


def format_pct(x: float) -> str:
    """A relative difference as a signed percentage: +48%, -3.5%."""
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "+inf%" if x > 0 else "-inf%"
    v = x * 100.0
    return f"{v:+.1f}%" if abs(v) < 10 else f"{v:+.0f}%"


def format_p(p: float) -> str:
    if math.isnan(p):
        return "p = n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


# A study with more scenarios than this is summarised in one table, not a block per scenario.
LARGE_SWEEP_SCENARIOS = 12
# ... of at most this many lines (scenarios evenly spaced in plan order); the rest are in the CSVs.
SWEEP_TABLE_LINES = 30
SWEEP_METRICS = ("ttft_p99_s", "e2e_p99_s")


def sweep_lines(plan: Plan, comparisons: pd.DataFrame) -> list[str]:
    """A large sweep in a few lines: per architecture and key metric, in how many scenarios it
    is significantly lower, higher or not different from the baseline; then one line per
    scenario (a bounded, evenly spaced selection) with its relative differences and intervals."""
    out: list[str] = [""]
    c = comparisons[comparisons["metric"].isin(SWEEP_METRICS)] if len(comparisons) else comparisons
    if c is None or c.empty:
        return out + ["no comparisons yet"]
    n = len(plan.scenarios)
    for (arch, metric), g in c.groupby(["architecture", "metric"], sort=False):
        sig = g["significant"].astype(bool)
        tested = g["tested"].astype(bool) if "tested" in g else pd.Series(True, index=g.index)
        lower = int((sig & (g["rel_diff"] < 0)).sum())
        higher = int((sig & (g["rel_diff"] > 0)).sum())
        untested = int((~tested).sum())
        same = int(tested.sum()) - lower - higher
        out.append(
            f"{arch} vs {plan.baseline}, {metric_label(str(metric))}: significantly lower in "
            f"{lower}, higher in {higher}, no significant difference in {same}"
            + (f", not tested (overloaded) in {untested}" if untested else "")
            + f" of {n} scenarios"
        )
    return out + value_lines(plan, comparisons)


def value_lines(plan: Plan, comparisons: pd.DataFrame) -> list[str]:
    """The verdict per swept value, one aligned table per swept parameter (at most
    SWEEP_TABLE_LINES rows each, evenly spaced; every value is in report.md)."""
    from distsim.report.sweeps import sweep_axes, value_table

    axes, _ = sweep_axes(plan)
    others = [a for a in plan.architectures if a != plan.baseline]
    out: list[str] = []
    for a, ax in enumerate(axes):
        table = value_table(plan, comparisons, list(SWEEP_METRICS), a)
        if table.empty:
            continue
        cols = [(arch, m) for arch in others for m in SWEEP_METRICS if (arch, m) in table.columns]
        n = len(table)
        step = max(1, math.ceil(n / SWEEP_TABLE_LINES))
        shown = table.iloc[::step]
        head = [ax.label()] + [
            (f"{arch} " if len(others) > 1 else "") + metric_label(m) for arch, m in cols
        ]
        body = [[str(r["value"])] + [str(r[c]) for c in cols] for r in shown.to_dict("records")]
        widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
        out += [
            "",
            f"by {ax.label()} (relative difference to {plan.baseline} [interval] and verdict, "
            f"or verdict counts over the other parameters; n.s. after adj.: p < "
            f"{1 - plan.confidence:g} alone, not after {_adjust_name(plan)}"
            + (f"; every {step}th of {n} values, all in report.md" if step > 1 else "")
            + "):",
        ]
        for row in [head, *body]:
            out.append(
                "  " + "   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            )
    return out


def _adjust_name(plan: Plan | None) -> str:
    method = str(getattr(getattr(plan, "study", None), "multiple_comparisons", "holm"))
    return {"holm": "Holm", "bonferroni": "Bonferroni", "bh": "BH", "none": "unadjusted"}.get(
        method, method
    )


def _magnitude(row: pd.Series | dict[str, Any]) -> str:
    """`by 28% [13%, 41%]`: the size of a change, its interval on the same side."""
    rel, lo, hi = float(row["rel_diff"]), float(row["rel_ci_low"]), float(row["rel_ci_high"])
    if rel < 0:
        rel, lo, hi = -rel, -hi, -lo

    def pct(x: float) -> str:
        return format_pct(x).lstrip("+")

    return f"by {pct(rel)} [{pct(lo)}, {pct(hi)}]"


def verdict(row: pd.Series | dict[str, Any], plan: Plan | None = None) -> str:
    """One comparison as a sentence a reader can act on (needs rel_ci_low/high, tested)."""
    arch, base, label = row["architecture"], row["baseline"], metric_label(row["metric"])
    adj = _adjust_name(plan)
    if not bool(row.get("tested", True)):
        why = str(row.get("not_tested") or "not tested")
        return f"{label}: {why}"
    rel = f"{format_pct(row['rel_diff'])} [{format_pct(row['rel_ci_low'])}, " + (
        f"{format_pct(row['rel_ci_high'])}]"
    )
    p_adj = float(row.get("p_adjusted", row["p_value"]))
    if bool(row["significant"]):
        lower = float(row["rel_diff"]) < 0
        word = "lowers" if lower else "raises"
        # latencies: lower is faster; say so, so nobody has to work out the direction
        good = ("faster; " if lower else "slower; ") if _is_time(str(row["metric"])) else ""
        return f"{arch} {word} {label} {_magnitude(row)} vs {base} ({good}{format_p(p_adj)}, {adj})"
    if float(row["p_value"]) < 1 - (plan.confidence if plan is not None else 0.95):
        return (
            f"{label}: {arch} vs {base} {rel}, {format_p(row['p_value'])} alone, but not "
            f"significant after {adj} adjustment across the study's comparisons "
            f"(adjusted {format_p(p_adj)})"
        )
    return f"{label}: no significant difference, {arch} vs {base} {rel} ({format_p(p_adj)}, {adj})"


def caution(row: pd.Series | dict[str, Any], summary: pd.DataFrame) -> str:
    """What a headline must carry when an interval it rests on is flagged `run_too_short` (the
    architecture's or the baseline's, same scenario and metric): "" otherwise."""
    if summary.empty or "flags" not in summary.columns or not bool(row.get("tested", True)):
        return ""
    s = summary[
        (summary["scenario_id"] == row["scenario_id"])
        & (summary["metric"] == row["metric"])
        & summary["architecture"].isin([row["architecture"], row["baseline"]])
    ]
    flagged = s[s["flags"].fillna("").astype(str).str.contains("run_too_short")]
    if flagged.empty:
        return ""
    who = " and ".join(sorted(flagged["architecture"].astype(str)))
    return f" · caution: {who}'s interval may be too short (run_too_short; see the flags)"


def primary_metrics(plan: Plan, engine: str) -> list[str]:
    """The metrics a scenario's headline speaks of: the study's `primary_metrics`, else mean and
    P99 TTFT (plus mean TPOT and SLO attainment on the batched engine)."""
    chosen = list(getattr(plan.study, "primary_metrics", None) or [])
    if chosen:
        return chosen
    out = ["ttft_mean_s", "ttft_p99_s"]
    if engine == "batched":
        out += ["tpot_mean_s", "slo_attainment"]
    return out


def _comparison_table(plan: Plan, rows: pd.DataFrame) -> Table:
    """The comparisons the headline leaves out: difference with its interval, p, verdict."""
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for name, justify in (("vs " + plan.baseline, "left"), ("metric", "left"),
                          ("difference [95% CI]", "right"), ("p (" + _adjust_name(plan) + ")",
                          "right"), ("verdict", "left")):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for _, r in rows.iterrows():
        if not bool(r.get("tested", True)):
            p, word = "—", "not tested"
        else:
            p = format_p(float(r["p_adjusted"])).removeprefix("p ").removeprefix("= ")
            alone = float(r["p_value"]) < 1 - plan.confidence
            word = (
                ("lower" if r["rel_diff"] < 0 else "higher")
                if r["significant"]
                else (f"n.s. after {_adjust_name(plan)}" if alone else "n.s.")
            )
        rel = f"{format_pct(r['rel_diff'])} [{format_pct(r['rel_ci_low'])}, " + (
            f"{format_pct(r['rel_ci_high'])}]"
        )
        table.add_row(str(r["architecture"]), metric_label(r["metric"]), rel, p, word)
    return table


def _scenario_table(plan: Plan, summary: pd.DataFrame) -> Table:
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("metric")
    for arch in plan.architectures:
        table.add_column(arch + (" (baseline)" if arch == plan.baseline else ""), justify="right")
    for metric in dict.fromkeys(summary["metric"]):
        rows = summary[summary["metric"] == metric]
        unit, scale = "", 1.0
        if _is_time(metric):
            unit, scale = time_unit(float(rows["estimate"].abs().max()))
        cells = []
        for arch in plan.architectures:
            hit = rows[rows["architecture"] == arch]
            if hit.empty:
                cells.append("—")
                continue
            r = hit.iloc[0]
            cells.append(format_interval(r["estimate"], r["ci_low"], r["ci_high"], scale))
        table.add_row(metric_label(metric) + (f" ({unit})" if unit else ""), *cells)
    return table


def replications_text(plan: Plan) -> str:
    """`30 replications`, or with `precision` the initial count, the target and the cap."""
    p = getattr(plan.study, "precision", None)
    if p is None:
        return f"{plan.replications} replications"
    metrics = ", ".join(metric_label(m) for m in p.metrics)
    return (
        f"{plan.replications} replications, then more until {metrics} are within "
        f"±{p.rel_half_width * 100:g}% (at most {p.max_replications})"
    )


def auto_warmup_text(record: Mapping[str, Any]) -> str:
    """How `warmup_s: auto` was resolved for a scenario."""
    per = ", ".join(f"{a} {v:g} s" for a, v in record["detected_s"].items())
    text = (
        f"warmup_s auto = {record['warmup_s']:g} s (MSER-5 on a pilot of "
        f"{record['pilot_replications']} replications; detected per architecture: {per})"
    )
    bad = [a for a, ok in record["reliable"].items() if not ok]
    if bad:
        text += f"; no steady state seen for {', '.join(bad)}"
    return text


def _pct_width(rel: float) -> str:
    return "±inf%" if not math.isfinite(rel) else f"±{rel * 100:.2g}%"


def precision_lines(plan: Plan, status: pd.DataFrame) -> list[str]:
    """One scenario's achieved precision: per architecture and metric, met or capped."""
    p = getattr(plan.study, "precision", None)
    if p is None or status.empty:
        return []
    cells = "; ".join(
        f"{r.architecture} {metric_label(r.metric)} {_pct_width(r.rel_half_width)}"
        for r in status.itertuples(index=False)
    )
    n = int(status["n"].max())
    target = f"±{p.rel_half_width * 100:g}%"
    if status["met"].all():
        return [f"precision: target {target} met with {n} replications ({cells})"]
    capped = status[status["capped"]]
    if len(capped):
        which = ", ".join(
            f"{r.architecture} {metric_label(r.metric)}" for r in capped.itertuples(index=False)
        )
        return [
            f"precision: target {target} NOT met — capped at {n} replications "
            f"(max_replications) for {which} ({cells})"
        ]
    return [f"precision: target {target} not met yet after {n} replications ({cells})"]


def used_flags(summary: pd.DataFrame) -> list[str]:
    """Flag names that appear in the summary, in FLAG_TEXT order."""
    if summary.empty or "flags" not in summary.columns:
        return []
    seen = {f for v in summary["flags"].dropna() for f in str(v).split(";") if f}
    return [f for f in FLAG_TEXT if f in seen] + sorted(seen - set(FLAG_TEXT))


def flag_lines(summary: pd.DataFrame) -> list[str]:
    """One scenario's flags, a line per architecture: each flag with the metrics it is on
    (`unstable` and `warmup_short` concern the whole architecture)."""
    if "flags" not in summary.columns:
        return []
    hits: dict[str, dict[str, list[str]]] = {}
    for r in summary.itertuples(index=False):
        for flag in str(r.flags if isinstance(r.flags, str) else "").split(";"):
            if flag:
                by_flag = hits.setdefault(str(r.architecture), {})
                label = metric_label(r.metric)
                needed = getattr(r, "duration_s_needed", math.nan)
                if flag == "run_too_short" and isinstance(needed, float) and math.isfinite(needed):
                    label += f": duration_s >= {needed:,.0f} would likely do"
                by_flag.setdefault(flag, []).append(label)
    lines = []
    for arch, by_flag in hits.items():
        order = [f for f in FLAG_TEXT if f in by_flag] + sorted(set(by_flag) - set(FLAG_TEXT))
        parts = [
            f if f in ("unstable", "warmup_short") else f"{f} ({', '.join(by_flag[f])})"
            for f in order
        ]
        lines.append(f"flags, {arch}: {'; '.join(parts)}")
    return lines


def render(
    plan: Plan,
    summary: pd.DataFrame,
    comparisons: pd.DataFrame,
    *,
    width: int = 110,
    notes: list[str] | None = None,
    workloads: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """The whole report as text (no colour codes).

    `workloads`: scenario id -> lines characterising its workload (what was simulated next to
    what the spec asked, `characterize.summary_lines`), printed under the scenario's heading.
    """
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False)
    study = plan.study
    pct = f"{plan.confidence * 100:g}%"
    console.print(
        f"{study.name}: {len(plan.scenarios)} scenario(s) x {len(plan.architectures)} "
        f"architectures x {replications_text(plan)} · {pct} intervals · baseline {plan.baseline}",
        highlight=False,
    )
    console.print(
        f"{FIRST_TOKEN_TEXT[str(getattr(study, 'first_token', 'prefill'))]}; differences are "
        f"other / {plan.baseline} - 1, significant after {_adjust_name(plan)} adjustment across "
        "the study's comparisons",
        highlight=False,
        soft_wrap=True,
    )
    prec = precision.status(summary, plan)
    large = len(plan.scenarios) > LARGE_SWEEP_SCENARIOS
    if large:
        for line in sweep_lines(plan, comparisons):
            console.print(line, highlight=False, soft_wrap=True, markup=False)
    for ps in [] if large else plan.scenarios:
        s = summary[summary["scenario_id"] == ps.id]
        console.print()
        ns = sorted(set(s["n"].astype(int))) if not s.empty else [0]
        reps = f"{ns[-1]} replications" if len(ns) == 1 else f"{ns[0]}-{ns[-1]} replications"
        if ns[-1] < plan.replications:
            reps += f" of {plan.replications} planned"
        console.print(f"scenario {ps.label()} · {reps}", style="bold", highlight=False)
        c = comparisons[comparisons["scenario_id"] == ps.id] if not comparisons.empty else None
        if c is not None and len(c):
            primary = primary_metrics(plan, str(getattr(ps.scenario, "engine", "exclusive")))
            order = {m: i for i, m in enumerate(primary)}
            head = c[c["metric"].isin(primary)].copy()
            head["_order"] = head["metric"].map(order)
            for _, row in head.sort_values(["_order", "architecture"]).iterrows():
                text = verdict(row, plan) + caution(row, s)
                console.print("  ▶ " + text, highlight=False, soft_wrap=True)
        if ps.warmup_auto is not None:
            console.print("  " + auto_warmup_text(ps.warmup_auto), highlight=False, soft_wrap=True)
        for line in hardware_lines(ps.scenario, list(plan.architectures)):
            console.print(f"  hardware {line}", highlight=False, soft_wrap=True)
        for line in (workloads or {}).get(ps.id, ()):
            console.print(f"  workload {line}", highlight=False, soft_wrap=True)
        if s.empty:
            console.print("  no results yet")
            continue
        console.print(_scenario_table(plan, s))
        for line in precision_lines(plan, prec[prec["scenario_id"] == ps.id]):
            console.print("  " + line, highlight=False, soft_wrap=True)
        for line in flag_lines(s):
            console.print("  " + line, highlight=False, soft_wrap=True)
        c = comparisons[comparisons["scenario_id"] == ps.id] if not comparisons.empty else None
        if c is not None and len(c):
            primary = primary_metrics(plan, str(getattr(ps.scenario, "engine", "exclusive")))
            rest = c[~c["metric"].isin(primary)]
            rest = rest[rest["metric"].astype(str).str.startswith(VERDICT_PREFIXES)]
            if len(rest):
                console.print("  other comparisons:", highlight=False)
                console.print(Padding(_comparison_table(plan, rest), (0, 0, 0, 4)))
    for line in goodput_lines(plan, summary) + cost_lines(plan, summary):
        console.print(line, highlight=False, soft_wrap=True)
    used = used_flags(summary)
    if used:
        console.print()
        console.print("what the flags mean:", highlight=False)
        for name in used:
            console.print(f"  {name}: {FLAG_TEXT[name]}", highlight=False, soft_wrap=True)
    for note in notes or []:
        console.print(f"note: {note}", highlight=False)
    return buf.getvalue()
