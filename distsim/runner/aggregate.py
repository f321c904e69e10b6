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


class _Cell:
    """One architecture's rows of one scenario as arrays, in row order: replication indices, the
    metric columns (float64, NaN where missing) and the payload texts (None where missing).

    Aggregation reads every statistic from these; pandas indexing per cell (a column access, a
    reindex) cost more than the statistics themselves in a sweep of many small scenarios."""

    __slots__ = ("rep", "floats", "texts", "offered")

    def __init__(
        self, rep: np.ndarray, floats: dict[str, np.ndarray], texts: dict[str, list], offered: float
    ) -> None:
        self.rep, self.floats, self.texts, self.offered = rep, floats, texts, offered

    def __len__(self) -> int:
        return int(self.rep.size)

    def has(self, column: str) -> bool:
        """The payload column is present in every row of the cell."""
        texts = self.texts.get(column)
        return texts is not None and all(t is not None for t in texts)

    def by_replication(self, values: np.ndarray, replications: np.ndarray) -> np.ndarray:
        """Row-ordered `values` at the given replication indices (NaN where missing)."""
        out = np.full(replications.size, np.nan)
        pos = np.searchsorted(replications, self.rep)
        ok = (pos < replications.size) & (replications[np.minimum(pos, replications.size - 1)]
                                          == self.rep)  # fmt: skip
        out[pos[ok]] = values[ok]
        return out

    def texts_at(self, column: str, replications: np.ndarray) -> list[str]:
        """The column's texts for the given (sorted) replication indices (all must be present)."""
        where = {int(r): i for i, r in enumerate(self.rep.tolist())}
        texts = self.texts[column]
        out = []
        for r in replications.tolist():
            i = where.get(int(r))
            if i is None or texts[i] is None:
                raise KeyError(f"no {column} for replication {r}")
            out.append(texts[i])
        return out


def _cells(rows: pd.DataFrame, metrics: list[str] | None = None) -> dict[tuple[str, str], _Cell]:
    """(scenario id, architecture) -> its `_Cell`: one groupby and one conversion of each column
    of the rows, so aggregation costs the same per scenario however many scenarios the study
    has. `metrics`: the float columns to keep (default: `metric_columns` without a plan)."""
    if rows.empty:
        return {}
    if metrics is None:
        skip = {*CORE_COLUMNS, *PAYLOAD_COLUMNS, PROFILE_COLUMN}
        metrics = [c for c in rows.columns if c not in skip]
    loads = [c for c in rows.columns if c.startswith("offered_load_")]
    present = [m for m in metrics if m in rows.columns]
    present += [c for c in loads if c not in present]
    block = rows[present].to_numpy(dtype=np.float64, na_value=np.nan) if present else None
    load_at = [present.index(c) for c in loads]
    texts = {
        c: rows[c].to_numpy(dtype=object, na_value=None)
        for c in PAYLOAD_COLUMNS
        if c in rows.columns
    }
    rep = rows["replication"].to_numpy()
    out: dict[tuple[str, str], _Cell] = {}
    groups = rows.groupby(["scenario_id", "architecture"], sort=False).indices
    for key, pos in groups.items():
        sub = block[pos] if block is not None else np.zeros((pos.size, 0))
        offered = 0.0
        if load_at:
            load_values = sub[:, load_at]
            if np.isfinite(load_values).any():
                offered = float(np.nanmax(load_values))
        out[(str(key[0]), str(key[1]))] = _Cell(
            rep[pos],
            {m: sub[:, i] for i, m in enumerate(present)},
            {c: t[pos].tolist() for c, t in texts.items()},
            offered,
        )
    return out


def quantile_of(metric: str) -> tuple[str, float] | None:
    """(sketch column, level) of a quantile metric such as `ttft_p99_s`; None for others."""
    m = _QUANTILE.match(metric)
    return (SKETCH_COLUMNS[m["what"]], int(m["level"]) / 100.0) if m else None


class Parsed:
    """Payload text (sketches, time profiles) parsed once per aggregation, keyed by the text, and
    the quantile sections computed from the parsed sketches.

    One sketch is read by several metrics (P50, P90, P99), by the summary and by the
    comparisons, and each profile by every diagnosis; JSON parsing dominated aggregation (a
    4,000-row study parsed every sketch ~9 times). Likewise a cell's P99 section serves its
    summary row, its mean's tail check and its comparison. One instance lives for one
    aggregation (a group of scenarios when streaming).
    """

    def __init__(self) -> None:
        self._sketches: dict[str, LogHistogram] = {}
        self._profiles: dict[str, diagnostics.TimeProfile] = {}
        self._merged: dict[tuple[int, ...], LogHistogram] = {}
        self._sections: dict[tuple[Any, ...], stats.QuantileSection] = {}

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

    def section(
        self, sketches: list[LogHistogram], q: float, confidence: float
    ) -> stats.QuantileSection:
        """`stats.quantile_section` of sketches this instance parsed (cached: the sketches are
        kept alive here, so their ids name them)."""
        ids = tuple(id(s) for s in sketches)
        key = (ids, q, confidence)
        out = self._sections.get(key)
        if out is None:
            merged = self._merged.get(ids)
            if merged is None:
                merged = self._merged[ids] = LogHistogram.merge(sketches)
            out = self._sections[key] = stats.quantile_section(sketches, q, confidence, merged)
        return out


def _sketches(
    cell: _Cell, column: str, replications: np.ndarray, parsed: Parsed | None = None
) -> list[LogHistogram]:
    """The cell's sketches for the given replication indices (all must be present)."""
    parsed = Parsed() if parsed is None else parsed
    return [parsed.sketch(t) for t in cell.texts_at(column, replications)]


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
    cells = _cells(rows, [])
    for ps in plan.scenarios:
        batched = _engine(ps) == "batched"
        for arch in plan.architectures:
            cell = cells.get((ps.id, arch))
            if cell is None or not len(cell):
                continue
            load = np.nan if batched else cell.offered
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
            if cell.has(PROFILE_COLUMN) and len(cell) >= 2:
                profiles = [parsed.profile(t) for t in cell.texts[PROFILE_COLUMN]]
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
    (one,) = _cells(cell, []).values()
    load = np.nan if _engine(ps) == "batched" else one.offered
    trend = None
    if one.has(PROFILE_COLUMN) and len(one) >= 2:
        parsed = Parsed() if parsed is None else parsed
        profiles = [parsed.profile(t) for t in one.texts[PROFILE_COLUMN]]
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
    cells, diag_rows = _cells(rows, metrics), _diag_rows(diag)
    bootstrap = getattr(plan.study, "quantile_intervals", "sectioning") == "bootstrap"
    for ps in plan.scenarios:
        for arch in plan.architectures:
            cell = cells.get((ps.id, arch))
            if cell is None or not len(cell):
                continue
            cell_flags = _cell_flags(diag_rows, ps.id, arch)
            columns = cell.floats
            has = {c: cell.has(c) for c in SKETCH_COLUMNS.values()}
            reps = np.sort(cell.rep)
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
                    sketches = _sketches(cell, quantile[0], reps, parsed)
                    sec = parsed.section(sketches, quantile[1], plan.confidence)
                    if bootstrap:
                        iv = _bootstrap(plan, f"{ps.id}/{arch}/{metric}", sketches, quantile[1])
                    else:
                        iv = stats.Interval(sec.pooled, sec.low, sec.high, sec.n)
                    needed_s = _run_length(ps, iv, sketches, quantile[1], sec.tail_episodes)
                elif tail_of and has.get(tail_of, False) and len(cell) >= 2:
                    iv = stats.mean_interval(values, plan.confidence)
                    sketches = _sketches(cell, tail_of, reps, parsed)
                    tail = parsed.section(sketches, diagnostics.MEAN_TAIL_LEVEL, 0.95)
                    needed_s = _run_length(ps, iv, sketches, None, math.nan, tail)
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
    ps: PlannedScenario,
    iv: Any,
    sketches: list[LogHistogram],
    q: float | None,
    episodes: float,
    tail: stats.QuantileSection | None = None,
) -> float:
    """The duration_s that would likely clear `run_too_short`, or NaN when it does not fire: a
    quantile (`q`) whose pooled bias is visible or whose tail rests on too few episodes, or a
    mean (`q` None) carried by such a tail (`distsim.stats.diagnostics`; `tail`: the sketches'
    section at its `MEAN_TAIL_LEVEL` and 0.95, when already computed)."""
    if q is None:
        short, factor = diagnostics.mean_too_short(sketches, section=tail)
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
    base: _Cell, cell: _Cell, column: str, q: float, confidence: float, parsed: Parsed
) -> stats.PairedDifference | None:
    """Pooled-quantile comparison over the replications both cells have (None if < 2)."""
    common = np.intersect1d(base.rep, cell.rep)
    if common.size < 2:
        return None
    a, b = _sketches(base, column, common, parsed), _sketches(cell, column, common, parsed)
    sa, sb = parsed.section(a, q, confidence), parsed.section(b, q, confidence)
    return stats.paired_sections_difference(sa, sb, confidence)


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
    cells = _cells(rows, metrics)
    for ps in plan.scenarios:
        mine = [c for a in plan.architectures if (c := cells.get((ps.id, a))) is not None]
        base = cells.get((ps.id, plan.baseline))
        if base is None or not len(base):
            continue
        # every replication index the scenario has (with `precision`, scenarios differ)
        reps = np.arange(max(int(c.rep.max()) for c in mine) + 1)
        base_values = {m: base.by_replication(base.floats[m], reps) for m in metrics}
        for arch in plan.architectures:
            if arch == plan.baseline:
                continue
            cell = cells.get((ps.id, arch))
            if cell is None or not len(cell):
                continue
            both = {c: base.has(c) and cell.has(c) for c in SKETCH_COLUMNS.values()}
            for metric in metrics:
                x, y = base_values[metric], cell.by_replication(cell.floats[metric], reps)
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
