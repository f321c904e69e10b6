"""From replication rows to the study's answer: estimates, intervals and paired comparisons.

Pure functions of the rows (the published `replications.parquet` layout) and the plan. The
statistics themselves live in `distsim.stats.compare`.

- summary: per scenario x architecture x metric, the estimate and its interval at the study's
  confidence over the replications present (`n` of them).
- comparisons: per scenario x non-baseline architecture x metric both have, the paired difference
  to the baseline over the replications both have, its interval, the relative difference, the
  paired-t p-value and whether it is significant at 1 - confidence.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

from distsim.runner.payload import PAYLOAD_COLUMNS, PROFILE_COLUMN, SKETCH_COLUMNS
from distsim.runner.plan import Plan, PlannedScenario
from distsim.runner.store import CORE_COLUMNS
from distsim.stats import compare as stats
from distsim.stats import diagnostics
from distsim.stats.sketch import LogHistogram, from_json

SUMMARY_VALUE_COLUMNS = [
    "architecture", "metric", "estimate", "ci_low", "ci_high", "n", "flags", "duration_s_needed",
]  # fmt: skip
# One paired test per row: p_value < 1 - confidence exactly when [diff_ci_low, diff_ci_high]
# excludes 0, and exactly when [rel_ci_low, rel_ci_high] does (distsim.stats.intervals).
# `significant` uses p_adjusted; `tested` is False (with `not_tested`, the reason) for
# comparisons left out of testing.
COMPARISON_VALUE_COLUMNS = [
    "architecture", "baseline", "metric", "baseline_estimate", "estimate", "diff",
    "diff_ci_low", "diff_ci_high", "rel_diff", "rel_ci_low", "rel_ci_high", "p_value",
    "p_adjusted", "significant", "tested", "not_tested",
]  # fmt: skip
# Quantile metrics estimated from the pooled sketches: metric -> (sketch column, level).
_QUANTILE = re.compile(r"^(?P<what>ttft|e2e)_p(?P<level>\d+)_s$")
# Extra columns kept in memory for the terminal report (not written to comparisons.csv).
COMPARISON_DETAIL_COLUMNS = ["n"]

# Metrics in the order a reader wants them; pool metrics and anything new follow.
_METRIC_ORDER = [
    "ttft_mean_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "ttft_max_s",
    "e2e_mean_s", "e2e_p99_s", "tpot_mean_s", "tpot_p50_s", "tpot_p90_s", "tpot_p99_s",
    "n_requests",
]  # fmt: skip


def summary_columns(plan: Plan) -> list[str]:
    return ["scenario_id", *plan.param_paths, *SUMMARY_VALUE_COLUMNS]


def comparison_columns(plan: Plan) -> list[str]:
    return ["scenario_id", *plan.param_paths, *COMPARISON_VALUE_COLUMNS]


def metric_columns(rows: pd.DataFrame, plan: Plan) -> list[str]:
    """Metric columns of the rows, in reading order."""
    # ttft_max_s: an average of per-run maxima estimates nothing a reader wants (it can read
    # below the P99); the rows keep it, the study's answer does not.
    skip = set(CORE_COLUMNS) | set(plan.param_paths) | set(PAYLOAD_COLUMNS) | {"ttft_max_s"}
    present = [c for c in rows.columns if c not in skip]
    known = [m for m in _METRIC_ORDER if m in present]
    return known + [m for m in present if m not in known]


_REP_INDEX = "_replication"


def _by_replication(cell: pd.DataFrame) -> pd.DataFrame:
    """The cell indexed by replication (done once per cell: indexing copies every column)."""
    if cell.index.name == _REP_INDEX:
        return cell
    out = cell.set_index("replication", drop=False)
    out.index.name = _REP_INDEX  # not "replication": that stays an unambiguous column
    return out


def _cells(rows: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """(scenario id, architecture) -> its rows indexed by replication: one pass over the rows,
    so aggregation costs the same per scenario however many scenarios the study has."""
    if rows.empty:
        return {}
    groups = rows.groupby(["scenario_id", "architecture"], sort=False)
    return {(str(k[0]), str(k[1])): _by_replication(g) for k, g in groups}


def _matrix(cell: pd.DataFrame, metrics: list[str], replications: np.ndarray) -> dict:
    """metric -> its values per replication index (NaN where missing), for every metric at once
    (one reindex per cell instead of one per metric)."""
    present = [m for m in metrics if m in cell.columns]
    block = _by_replication(cell)[present].reindex(replications)
    values = block.to_numpy(dtype=np.float64, na_value=np.nan)
    out = {m: values[:, i] for i, m in enumerate(present)}
    missing = np.full(replications.size, np.nan)
    return {m: out.get(m, missing) for m in metrics}


def _values(cell: pd.DataFrame, metric: str, replications: np.ndarray) -> np.ndarray:
    """The metric per replication index (NaN where the replication is missing)."""
    out = np.full(replications.size, np.nan)
    if metric in cell.columns:
        series = _by_replication(cell)[metric].astype("float64")
        out = series.reindex(replications).to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def quantile_of(metric: str) -> tuple[str, float] | None:
    """(sketch column, level) of a quantile metric such as `ttft_p99_s`; None for others."""
    m = _QUANTILE.match(metric)
    return (SKETCH_COLUMNS[m["what"]], int(m["level"]) / 100.0) if m else None


class Parsed:
    """Payload text (sketches, time profiles) parsed once per aggregation, keyed by the text.

    One sketch is read by several metrics (P50, P90, P99), by the summary and by the
    comparisons, and each profile by every diagnosis; JSON parsing dominated aggregation (a
    4,000-row study parsed every sketch ~9 times). One instance lives for one aggregation.
    """

    def __init__(self) -> None:
        self._sketches: dict[str, LogHistogram] = {}
        self._profiles: dict[str, diagnostics.TimeProfile] = {}

    def sketch(self, text: str) -> LogHistogram:
        out = self._sketches.get(text)
        if out is None:
            out = self._sketches[text] = from_json(text)
        return out

    def profile(self, text: str) -> diagnostics.TimeProfile:
        out = self._profiles.get(text)
        if out is None:
            out = self._profiles[text] = diagnostics.profile_from_json(text)
        return out


def _sketches(
    cell: pd.DataFrame, column: str, replications: np.ndarray, parsed: Parsed | None = None
) -> list[LogHistogram]:
    """The cell's sketches for the given replication indices (all must be present)."""
    parsed = Parsed() if parsed is None else parsed
    texts = _by_replication(cell)[column].reindex(replications)
    missing = texts.isna().to_numpy()
    if missing.any():
        raise KeyError(f"no {column} for replication {replications[missing.argmax()]}")
    return [parsed.sketch(t) for t in texts.tolist()]


def _has(cell: pd.DataFrame, column: str) -> bool:
    return column in cell.columns and bool(cell[column].notna().all())


def _offered_load(cell: pd.DataFrame) -> float:
    cols = [c for c in cell.columns if c.startswith("offered_load_")]
    values = cell[cols].to_numpy(dtype=np.float64, na_value=np.nan) if cols else np.zeros(0)
    return float(np.nanmax(values)) if np.isfinite(values).any() else 0.0


DIAGNOSTIC_COLUMNS = [
    "scenario_id", "architecture", "offered_load", "unstable", "unstable_reason", "warmup_s",
    "warmup_detected_s", "warmup_short", "ttft_trend_rel", "ttft_growing",
]  # fmt: skip
# TTFT rising by at least this fraction from the first to the second half of the measured window,
# consistently across replications (diagnostics.ttft_trend), is taken as overload: a queue that
# grows through the run (a stable system's late warm-up rarely does more than that).
OVERLOAD_GROWTH = 0.5


def _engine(ps: Any) -> str:
    return str(getattr(ps.scenario, "engine", "exclusive"))


def diagnose(rows: pd.DataFrame, plan: Plan, parsed: Parsed | None = None) -> pd.DataFrame:
    """Per scenario x architecture: is it overloaded, and is its warm-up long enough.

    Overload is decided from the engine that ran. The exclusive engine serves one request per
    GPU at the spec's token rates, so its offered load (arrival rate x mean service / GPUs, from
    the spec) >= 1 means a queue without bound. The batched engine's capacity depends on batch
    size, KV use and step times, so the exclusive engine's load says nothing about it (and is not
    reported); for both engines, evidence from the runs counts: a TTFT that grows by at least
    `OVERLOAD_GROWTH` from the first to the second half of the measured window, significantly
    across replications (see `distsim.stats.diagnostics.ttft_trend`). Warm-up: MSER-5 against
    the configured warm-up.
    """
    parsed = Parsed() if parsed is None else parsed
    records: list[dict[str, Any]] = []
    cells = _cells(rows)
    for ps in plan.scenarios:
        batched = _engine(ps) == "batched"
        for arch in plan.architectures:
            cell = cells.get((ps.id, arch))
            if cell is None or cell.empty:
                continue
            load = np.nan if batched else _offered_load(cell)
            rec: dict[str, Any] = {
                "scenario_id": ps.id,
                "architecture": arch,
                "offered_load": load,
                "unstable": False,
                "unstable_reason": "",
                "warmup_s": ps.scenario.warmup_s,
                "warmup_detected_s": np.nan,
                "warmup_short": False,
                "ttft_trend_rel": np.nan,
                "ttft_growing": False,
            }
            trend = None
            if _has(cell, PROFILE_COLUMN) and len(cell) >= 2:
                profiles = [parsed.profile(t) for t in cell[PROFILE_COLUMN]]
                warm = diagnostics.detect_warmup(profiles)
                trend = diagnostics.ttft_trend(profiles, ps.scenario.warmup_s)
                rec.update(
                    warmup_detected_s=warm.detected_s,
                    warmup_short=diagnostics.warmup_short(ps.scenario.warmup_s, warm),
                    ttft_trend_rel=trend.rel_increase,
                    ttft_growing=trend.growing,
                )
            reason = _overload(arch, load, trend)
            rec.update(unstable=bool(reason), unstable_reason=reason)
            records.append(rec)
    return pd.DataFrame(records, columns=DIAGNOSTIC_COLUMNS)


def _overload(arch: str, load: float, trend: diagnostics.Trend | None) -> str:
    """Why `arch` counts as overloaded, or "" when it does not: offered load >= 1 on a pool
    (exclusive engine; NaN for the batched engine, whose capacity depends on its batches), or TTFT
    growing through the measured window consistently across replications (any engine)."""
    if load >= 1.0:
        return (
            f"{arch} is overloaded (offered load {load:.2f} on a GPU pool: its queue grows "
            "through the run)"
        )
    if trend is not None and trend.growing and trend.rel_increase >= OVERLOAD_GROWTH:
        return (
            f"{arch} is overloaded (its TTFT grows {trend.rel_increase * 100:+.0f}% "
            "from the first to the second half of the measured window, in every "
            "replication: its queue grows through the run)"
        )
    return ""


def overload_reason(
    ps: PlannedScenario, arch: str, cell: pd.DataFrame, parsed: Parsed | None = None
) -> str:
    """The overload decision `diagnose` takes for one cell (one architecture's rows of one
    scenario), for callers that look at one candidate at a time (`distsim select`)."""
    if cell.empty:
        return ""
    load = np.nan if _engine(ps) == "batched" else _offered_load(cell)
    trend = None
    if _has(cell, PROFILE_COLUMN) and len(cell) >= 2:
        parsed = Parsed() if parsed is None else parsed
        profiles = [parsed.profile(t) for t in cell[PROFILE_COLUMN]]
        trend = diagnostics.ttft_trend(profiles, ps.scenario.warmup_s)
    return _overload(arch, load, trend)


def _diag_rows(diag: pd.DataFrame) -> dict[tuple[str, str], Any]:
    """(scenario id, architecture) -> its diagnosis row (a lookup instead of a scan per cell)."""
    return {(r.scenario_id, r.architecture): r for r in diag.itertuples(index=False)}


def _cell_flags(diag: pd.DataFrame | dict, scenario_id: str, arch: str) -> list[str]:
    table = diag if isinstance(diag, dict) else _diag_rows(diag)
    row = table.get((scenario_id, arch))
    if row is None:
        return []
    flags = []
    if row.unstable:
        flags.append("unstable")
    # TTFT still growing through the measured window of a stable system: not warmed up yet.
    if row.warmup_short or (row.ttft_growing and not row.unstable):
        flags.append("warmup_short")
    return flags


def unstable_scenarios(diag: pd.DataFrame) -> dict[str, str]:
    """Scenario id -> why its comparisons are not tested (an architecture is overloaded)."""
    if not len(diag):
        return {}
    hit = diag[diag["unstable"].astype(bool)]
    out: dict[str, str] = {}
    for sid, group in hit.groupby("scenario_id", sort=False):
        out[str(sid)] = "not tested: " + "; ".join(group["unstable_reason"].astype(str))
    return out


def summarize(
    rows: pd.DataFrame,
    plan: Plan,
    diag: pd.DataFrame | None = None,
    parsed: Parsed | None = None,
) -> pd.DataFrame:
    """The summary table (see module docstring), in plan order.

    Quantile metrics with stored sketches: the pooled quantile of every measured request of the
    cell's replications, with the sectioning interval of `distsim.stats.intervals`; other metrics:
    the
    average over replications with a Student-t interval. `flags` names the diagnostics that apply
    (`unstable`, `run_too_short`, `warmup_short`), semicolon-separated.
    """
    records: list[dict[str, Any]] = []
    if rows.empty:
        return pd.DataFrame(columns=summary_columns(plan))
    parsed = Parsed() if parsed is None else parsed
    diag = diagnose(rows, plan, parsed) if diag is None else diag
    metrics = metric_columns(rows, plan)
    cells, diag_rows = _cells(rows), _diag_rows(diag)
    for ps in plan.scenarios:
        for arch in plan.architectures:
            cell = cells.get((ps.id, arch))
            if cell is None or cell.empty:
                continue
            cell_flags = _cell_flags(diag_rows, ps.id, arch)
            present = [m for m in metrics if m in cell.columns]
            block = cell[present].to_numpy(dtype=np.float64, na_value=np.nan)  # once per cell
            columns = {m: block[:, i] for i, m in enumerate(present)}
            has = {c: _has(cell, c) for c in SKETCH_COLUMNS.values()}
            for metric in metrics:
                if metric.startswith("offered_load_") and _engine(ps) == "batched":
                    continue  # the exclusive engine's figure: meaningless for batching
                values = columns[metric]
                if not np.isfinite(values).any():
                    continue  # e.g. a pool this architecture does not have
                flags = list(cell_flags)
                needed_s = np.nan
                quantile = quantile_of(metric)
                tail_of = _MEAN_OF.get(metric)
                if quantile and has.get(quantile[0], False) and len(cell) >= 2:
                    reps = np.sort(cell["replication"].to_numpy())
                    sketches = _sketches(cell, quantile[0], reps, parsed)
                    sec = stats.quantile_section(sketches, quantile[1], plan.confidence)
                    if getattr(plan.study, "quantile_intervals", "sectioning") == "bootstrap":
                        iv = _bootstrap(plan, f"{ps.id}/{arch}/{metric}", sketches, quantile[1])
                    else:
                        iv = stats.Interval(sec.pooled, sec.low, sec.high, sec.n)
                    needed_s = _run_length(ps, iv, sketches, quantile[1], sec.tail_episodes)
                elif tail_of and has.get(tail_of, False) and len(cell) >= 2:
                    iv = stats.mean_interval(values, plan.confidence)
                    reps = np.sort(cell["replication"].to_numpy())
                    sketches = _sketches(cell, tail_of, reps, parsed)
                    needed_s = _run_length(ps, iv, sketches, None, math.nan)
                else:
                    iv = stats.mean_interval(values, plan.confidence)
                if math.isfinite(needed_s) or needed_s == math.inf:
                    flags.append("run_too_short")
                records.append(
                    {
                        "scenario_id": ps.id,
                        **ps.params,
                        "architecture": arch,
                        "metric": metric,
                        "estimate": iv.estimate,
                        "ci_low": iv.low,
                        "ci_high": iv.high,
                        "n": iv.n,
                        "flags": ";".join(sorted(flags)),
                        # empty when no run length can be estimated (no tail at all)
                        "duration_s_needed": needed_s if math.isfinite(needed_s) else math.nan,
                    }
                )
    return pd.DataFrame(records, columns=summary_columns(plan))


_MEAN_OF = {"ttft_mean_s": SKETCH_COLUMNS["ttft"], "e2e_mean_s": SKETCH_COLUMNS["e2e"]}


def _run_length(
    ps: PlannedScenario, iv: Any, sketches: list[LogHistogram], q: float | None, episodes: float
) -> float:
    """The duration_s that would likely clear `run_too_short`, or NaN when it does not fire: a
    quantile (`q`) whose pooled bias is visible or whose tail rests on too few episodes, or a
    mean (`q` None) carried by such a tail (`distsim.stats.diagnostics`)."""
    if q is None:
        short, factor = diagnostics.mean_too_short(sketches)
    else:
        per_rep = [s.quantile(q) for s in sketches]
        short, factor = diagnostics.quantile_too_short(
            iv.estimate, per_rep, iv.half_width, episodes
        )
    if not short:
        return math.nan
    warm = ps.scenario.warmup_s
    warm_s = warm if isinstance(warm, float) else 0.0
    return diagnostics.duration_for_factor(ps.scenario.duration_s, warm_s, factor)


def _bootstrap(plan: Plan, name: str, sketches: list[LogHistogram], q: float) -> Any:
    """`quantile_intervals: bootstrap`: BCa over replications, seeded by the study and `name`."""
    from distsim.stats.bootstrap import quantile_interval
    from distsim.workload.streams import stream

    rng = stream(plan.study.seed, 0, f"bootstrap/{name}")
    return quantile_interval(sketches, q, plan.confidence, rng=rng)


def _paired_quantile(
    base: pd.DataFrame,
    cell: pd.DataFrame,
    column: str,
    q: float,
    confidence: float,
    parsed: Parsed | None = None,
) -> stats.PairedDifference | None:
    """Pooled-quantile comparison over the replications both cells have (None if < 2)."""
    common = np.intersect1d(base["replication"].to_numpy(), cell["replication"].to_numpy())
    if common.size < 2:
        return None
    a, b = _sketches(base, column, common, parsed), _sketches(cell, column, common, parsed)
    return stats.paired_quantile_difference(a, b, q, confidence)


def compare(
    rows: pd.DataFrame,
    plan: Plan,
    *,
    detail: bool = False,
    diag: pd.DataFrame | None = None,
    parsed: Parsed | None = None,
    adjust: bool = True,
) -> pd.DataFrame:
    """The comparisons table; with `detail`, also the relative interval and the pair count.

    Quantile metrics with sketches compare pooled quantiles (sectioning on paired replications);
    other metrics use the paired t. All comparisons of the study form one family: `p_adjusted`
    applies the spec's `multiple_comparisons` method (Holm by default) and `significant` means
    p_adjusted < 1 - confidence. Comparisons in unstable scenarios are shown but not tested
    (p_adjusted empty, never significant).
    """
    columns = comparison_columns(plan) + (COMPARISON_DETAIL_COLUMNS if detail else [])
    if rows.empty:
        return pd.DataFrame(columns=columns)
    parsed = Parsed() if parsed is None else parsed
    diag = diagnose(rows, plan, parsed) if diag is None else diag
    unstable = unstable_scenarios(diag)
    records: list[dict[str, Any]] = []
    metrics = metric_columns(rows, plan)
    cells = _cells(rows)
    for ps in plan.scenarios:
        mine = [c for a in plan.architectures if (c := cells.get((ps.id, a))) is not None]
        base = cells.get((ps.id, plan.baseline))
        if base is None or base.empty:
            continue
        # every replication index the scenario has (with `precision`, scenarios differ)
        reps = np.arange(max(int(c["replication"].max()) for c in mine) + 1)
        for arch in plan.architectures:
            if arch == plan.baseline:
                continue
            cell = cells.get((ps.id, arch))
            if cell is None or cell.empty:
                continue
            base_values = _matrix(base, metrics, reps)
            cell_values = _matrix(cell, metrics, reps)
            both = {c: _has(base, c) and _has(cell, c) for c in SKETCH_COLUMNS.values()}
            for metric in metrics:
                x, y = base_values[metric], cell_values[metric]
                if not (np.isfinite(x) & np.isfinite(y)).any():
                    continue  # a metric only one side has (pool metrics)
                quantile = quantile_of(metric)
                d = None
                if quantile and both.get(quantile[0], False):
                    d = _paired_quantile(
                        base, cell, quantile[0], quantile[1], plan.confidence, parsed
                    )
                if d is None:
                    d = stats.paired_difference(x, y, plan.confidence)
                record = {
                    "scenario_id": ps.id,
                    **ps.params,
                    "architecture": arch,
                    "baseline": plan.baseline,
                    "metric": metric,
                    "baseline_estimate": d.baseline_estimate,
                    "estimate": d.estimate,
                    "diff": d.diff,
                    "diff_ci_low": d.diff_low,
                    "diff_ci_high": d.diff_high,
                    "rel_diff": d.rel_diff,
                    "rel_ci_low": d.rel_low,
                    "rel_ci_high": d.rel_high,
                    "p_value": d.p_value,
                    "tested": ps.id not in unstable and d.n >= 2,
                    "not_tested": unstable.get(ps.id, "")
                    or ("fewer than 2 paired replications" if d.n < 2 else ""),
                }
                if detail:
                    record.update(n=d.n)
                records.append(record)
    out = pd.DataFrame(records)
    if out.empty:
        return pd.DataFrame(columns=columns)
    if not adjust:  # a group of a larger family: `adjust_family` runs once on the whole table
        out["p_adjusted"], out["significant"] = np.nan, False
        return out[columns]
    return adjust_family(out, plan)[columns]


def adjust_family(comparisons: pd.DataFrame, plan: Plan) -> pd.DataFrame:
    """`p_adjusted` and `significant` over every comparison of the table, one family (the
    spec's `multiple_comparisons` method). Aggregation by scenario groups calls it once more on
    the concatenated table: the adjustment is the only statistic that spans scenarios."""
    out = comparisons
    if out.empty:
        return out
    method = getattr(plan.study, "multiple_comparisons", "holm")
    tested = out["tested"].to_numpy(dtype=bool)
    p = np.where(tested, out["p_value"].to_numpy(dtype=np.float64), np.nan)
    out["p_adjusted"] = stats.adjust_p_values(p, method)
    out["significant"] = tested & (np.nan_to_num(out["p_adjusted"], nan=1.0) < 1 - plan.confidence)
    return out


def public_comparisons(detailed: pd.DataFrame, plan: Plan) -> pd.DataFrame:
    """The comparisons.csv layout of a detailed comparisons table."""
    return detailed[comparison_columns(plan)].reset_index(drop=True)
