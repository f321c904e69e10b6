"""Aggregation one group of whole scenarios at a time, so the driver never holds every row.

Every statistic of the summary and the comparisons is a function of one scenario's rows, except
three that span scenarios and need little: the multiple-comparison adjustment (p-values only,
`aggregate.adjust_family`), the cost rows (from the summary) and the goodput search (one scalar
column per row, `slo_attainment`). So the rows are read from the store a group of
`group_size` scenarios at a time (`ResultStore.iter_rows`), each group is summarised,
compared and diagnosed with its own parse cache, and only the group's result tables are kept.
The tables come out identical to aggregating every row at once (same functions, same order).
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from distsim.runner import aggregate, precision
from distsim.runner.plan import Plan
from distsim.runner.store import CORE_COLUMNS, ResultStore
from distsim.stats import cost, goodput

# Scenarios aggregated together: at most GROUP_SCENARIOS, fewer when their rows (with sketches)
# would exceed GROUP_ROWS (`group_size`): bounds what the driver holds at once.
GROUP_SCENARIOS = 64
GROUP_ROWS = 8192
# ... and fewer when their stored Parquet (the commit log's sizes) would exceed GROUP_BYTES: rows
# of long runs carry large sketches.
GROUP_BYTES = 32 * 2**20
# The one row column the goodput search reads across scenarios.
_GOODPUT_COLUMNS = ["slo_attainment"]


@dataclass
class Aggregates:
    """The result tables of a study and what the rows held: `rows_done` rows used in the
    summary (`rows_initial` of them among the first `plan.replications`), `counts` the
    replications each scenario has (`precision.totals`)."""

    summary: pd.DataFrame
    comparisons: pd.DataFrame
    detail: pd.DataFrame
    diagnosis: pd.DataFrame
    rows_done: int = 0
    rows_initial: int = 0
    counts: dict[str, int] = field(default_factory=dict)


def group_size(plan: Plan, store: ResultStore | None = None) -> int:
    """Scenarios per group: `GROUP_SCENARIOS`, fewer for scenarios of many replications or,
    given the `store`, of many stored bytes (its largest scenario's)."""
    per_scenario = max(len(plan.architectures) * plan.max_replications, 1)
    size = max(1, min(GROUP_SCENARIOS, GROUP_ROWS // per_scenario))
    return size if store is None else min(size, store.scenarios_within(GROUP_BYTES))


def sub_plan(plan: Plan, ids: Iterable[str]) -> Plan:
    """The plan restricted to some scenarios (plan order kept)."""
    wanted = set(ids)
    return dataclasses.replace(plan, scenarios=tuple(s for s in plan.scenarios if s.id in wanted))


@dataclass
class _Parts:
    summaries: list[pd.DataFrame] = field(default_factory=list)
    details: list[pd.DataFrame] = field(default_factory=list)
    diagnoses: list[pd.DataFrame] = field(default_factory=list)
    goodput_rows: list[pd.DataFrame] = field(default_factory=list)
    rows_done: int = 0
    rows_initial: int = 0
    counts: dict[str, int] = field(default_factory=dict)


def _add_group(parts: _Parts, rows: pd.DataFrame, plan: Plan) -> None:
    """Summarise, compare and diagnose one group of whole scenarios (published rows)."""
    if rows.empty:
        return
    group = sub_plan(plan, rows["scenario_id"].unique())
    parts.counts.update(precision.totals(rows, group))
    used = precision.used_rows(rows, group)
    parts.rows_done += len(used)
    parts.rows_initial += int((used["replication"] < plan.replications).sum())
    parsed = aggregate.Parsed()  # one group's sketches only
    diag = aggregate.diagnose(used, group, parsed)
    parts.diagnoses.append(diag)
    parts.summaries.append(aggregate.summarize(used, group, diag=diag, parsed=parsed))
    parts.details.append(
        aggregate.compare(used, group, detail=True, diag=diag, parsed=parsed, adjust=False)
    )
    if plan.study.goodput is not None and "slo_attainment" in used.columns:
        keep = [c for c in used.columns if c in {*CORE_COLUMNS, *plan.param_paths}]
        parts.goodput_rows.append(used[[*keep, *_GOODPUT_COLUMNS]])


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def aggregate_groups(groups: Iterable[pd.DataFrame], plan: Plan) -> Aggregates:
    """The study's tables from its published rows, given as groups of whole scenarios in plan
    order (see the module docstring)."""
    parts = _Parts()
    for rows in groups:
        _add_group(parts, rows, plan)
        del rows
        _release_freed_memory()
    return _finish([parts], plan)


@functools.cache
def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to do
        return None


def _release_freed_memory() -> None:
    """Give the pages a group freed back to the system (glibc's `malloc_trim`; elsewhere
    nothing). Each group's small result tables stay allocated between its large transient
    ones, so the heap cannot shrink by itself and the driver's resident memory crept up group
    after group (figures: benchmarks/README.md, driver memory against rows)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _finish(chunks: list[_Parts], plan: Plan) -> Aggregates:
    """The study's tables from the per-group tables of every chunk (in plan order)."""
    parts = _Parts()
    for c in chunks:  # each group's tables move here (one reference, freed once joined)
        parts.summaries += c.summaries
        parts.details += c.details
        parts.diagnoses += c.diagnoses
        parts.goodput_rows += c.goodput_rows
        parts.rows_done += c.rows_done
        parts.rows_initial += c.rows_initial
        parts.counts.update(c.counts)
        c.summaries, c.details, c.diagnoses, c.goodput_rows = [], [], [], []
    summary = _concat(parts.summaries, aggregate.summary_columns(plan))
    parts.summaries.clear()
    summary = precision.add_flags(summary, plan)
    costs = cost.cost_rows(summary, plan)  # price of every architecture whose GPUs have one
    if not costs.empty:
        summary = pd.concat([summary, costs], ignore_index=True)
    if parts.goodput_rows:
        extra = goodput.summary_rows(_concat(parts.goodput_rows, []), plan)
        if not extra.empty:
            per_usd = cost.goodput_cost_rows(extra, plan)  # requests per dollar and per kWh
            summary = pd.concat([summary, extra, per_usd], ignore_index=True)
    detail_columns = aggregate.comparison_columns(plan) + aggregate.COMPARISON_DETAIL_COLUMNS
    detail = _concat(parts.details, detail_columns)
    parts.details.clear()
    detail = aggregate.adjust_family(detail, plan)
    diag = _concat(parts.diagnoses, aggregate.DIAGNOSTIC_COLUMNS)
    return Aggregates(
        summary=summary,
        comparisons=aggregate.public_comparisons(detail, plan),
        detail=detail,
        diagnosis=diag,
        rows_done=parts.rows_done,
        rows_initial=parts.rows_initial,
        counts={ps.id: parts.counts.get(ps.id, plan.replications) for ps in plan.scenarios},
    )


def split_groups(
    rows: pd.DataFrame, plan: Plan, size: int = GROUP_SCENARIOS
) -> Iterator[pd.DataFrame]:
    """Published rows held in memory, as groups of `size` whole scenarios in plan order."""
    if rows.empty:
        return
    by_id = dict(tuple(rows.groupby("scenario_id", sort=False)))
    ids = [ps.id for ps in plan.scenarios if ps.id in by_id]
    for start in range(0, len(ids), size):
        yield pd.concat([by_id[i] for i in ids[start : start + size]], ignore_index=True)


# Studies of at least this many scenarios fan aggregation out over Ray tasks when a local
# session with more than one CPU is still open (`aggregate_store`); smaller ones stay in the driver:
# the statistics cost a few ms of CPU per scenario, and each task first imports the aggregation
# modules and opens the folder (seconds), so on 2 CPUs fanning out pays only from about 1,000
# scenarios (benchmarks/README.md, bench_driver.py --ray).
FAN_OUT_SCENARIOS = 1000
# Chunks per CPU when fanning out (the last ones balance the load).
CHUNKS_PER_CPU = 3


def fan_out_session(session: Any, plan: Plan) -> Any:
    """The Ray session to fan aggregation out over, or None: a study of at least
    `FAN_OUT_SCENARIOS` scenarios, a local session (its workers read the folder) of 2+ CPUs."""
    if session is None or len(plan.scenarios) < FAN_OUT_SCENARIOS:
        return None
    return session if session.info.nodes == 1 and session.info.cpus >= 2 else None


def aggregate_chunk(shared: tuple[str, Plan], ids: list[str]) -> _Parts:
    """One chunk of scenarios aggregated from the folder `shared[0]` (a Ray task's work)."""
    out_dir, plan = shared
    parts = _Parts()
    store = ResultStore.reader(out_dir)
    for rows in store.iter_rows(plan, ids, group_size(plan, store)):
        _add_group(parts, rows, plan)
        del rows
        _release_freed_memory()
    return parts


def aggregate_store(
    store: ResultStore,
    plan: Plan,
    size: int | None = None,
    session: Any = None,
) -> Aggregates:
    """The study's tables from the plan's stored rows, read `size` scenarios at a time; with a
    Ray `session` (`execute.RaySession`, local) and at least `FAN_OUT_SCENARIOS` scenarios, the
    chunks are aggregated by Ray tasks, each reading its own scenarios from the folder, and a
    chunk whose task failed is aggregated in the driver. The tables are the same either way."""
    size = size or group_size(plan, store)
    ids = [ps.id for ps in plan.scenarios]
    cpus = int(getattr(getattr(session, "info", None), "cpus", 0) or 0)
    if session is None or cpus < 2 or len(ids) < FAN_OUT_SCENARIOS:
        return aggregate_groups(store.iter_rows(plan, batch_scenarios=size), plan)
    n_chunks = min(cpus * CHUNKS_PER_CPU, -(-len(ids) // size))
    step = -(-len(ids) // n_chunks)
    chunks = [ids[i : i + step] for i in range(0, len(ids), step)]
    shared = (str(store.out_dir), plan)
    done: list[_Parts] = []
    for chunk, got in zip(chunks, session.map_tasks(aggregate_chunk, shared, chunks), strict=True):
        done.append(got if isinstance(got, _Parts) else aggregate_chunk(shared, chunk))
    return _finish(done, plan)


# Scenarios per group when only the key columns are read (a few bytes per row).
_KEY_GROUP = 4096


def plan_keys(store: ResultStore, plan: Plan) -> pd.DataFrame:
    """(scenario_id, architecture, replication, seed) of every stored row of the plan."""
    frames = [f for f in store.iter_rows(plan, batch_scenarios=_KEY_GROUP, columns=[]) if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CORE_COLUMNS)


def count_used(store: ResultStore, plan: Plan) -> tuple[int, int, dict[str, int]]:
    """Rows the summary will use, of them among the first replications, and replications per
    scenario: from the commit log's keys alone, no part read (the manifest records them before
    aggregating, just after consolidation has read every part)."""
    keys = precision.used_rows(store.committed_plan_keys(plan), plan)
    initial = int((keys["replication"] < plan.replications).sum()) if len(keys) else 0
    return len(keys), initial, precision.totals(keys, plan)


def tracked_columns(plan: Plan) -> list[str]:
    """The row columns the precision tracker reads: its metrics, or their sketches."""
    p = plan.study.precision
    assert p is not None
    out = []
    for metric in p.metrics:
        q = aggregate.quantile_of(metric)
        out.append(q[0] if q else metric)
    return out
