"""`StudyResult`: a study's aggregate tables, how the run went, and its rows read lazily from the
output folder; with the workload characterisation the terminal report prints beside them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from distsim.errors import DistsimError
from distsim.runner import precision, streaming
from distsim.runner.plan import Plan
from distsim.runner.store import ResultStore
from distsim.spec.study import Study


@dataclass
class StudyResult:
    """A study's results: the aggregate tables of the output folder, how the run went, and its
    rows read lazily from the folder.

    `summary`, `comparisons`: summary.csv and comparisons.csv (`comparisons_detail` adds the
    relative interval and pair count, `diagnosis` the overload and warm-up checks per cell).
    Rows are not held: `rows(ids)` reads some scenarios', `iter_rows()` all a group at a time,
    `replications` all at once (`rows_in_memory` holds them for results without a folder).
    `failures`: replications whose simulation raised (scenario_id, architecture, replication,
    seed, error). `timings_s`: ray_start, simulation, aggregation, total; task_compute is the
    wall time inside tasks (summed) and task_cpu their threads' CPU time (less when other
    processes share the cores). `aggregation` is everything after the last task, of it
    `consolidate` (parts merged, replications.parquet, the row counts), `statistics` (the
    tables) and `report` (the files); `aggregation_cpu` the driver process's CPU time in it.
    """

    study: Study
    plan: Plan
    out_dir: Path
    rows_in_memory: pd.DataFrame | None
    summary: pd.DataFrame
    comparisons: pd.DataFrame
    comparisons_detail: pd.DataFrame
    failures: list[dict[str, Any]] = field(default_factory=list)
    nodes: int = 0
    cpus: int = 0
    rows_reused: int = 0
    rows_simulated: int = 0
    tasks: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    waves: int = 0  # precision waves run (this run)
    diagnosis: pd.DataFrame | None = None
    rows_done: int = -1  # rows the summary uses; -1: count them from the rows
    rows_initial: int = -1  # of which among the first `plan.replications`
    replication_counts: dict[str, int] = field(default_factory=dict)

    def iter_rows(
        self, batch_scenarios: int | None = None, columns: Any = None
    ) -> Iterator[pd.DataFrame]:
        """The rows the summary uses, `batch_scenarios` whole scenarios at a time."""
        batch_scenarios = batch_scenarios or streaming.group_size(self.plan)
        if self.rows_in_memory is not None:
            groups = streaming.split_groups(self.rows_in_memory, self.plan, batch_scenarios)
        else:
            groups = ResultStore.reader(self.out_dir).iter_rows(
                self.plan, batch_scenarios=batch_scenarios, columns=columns
            )
        for g in groups:
            yield precision.used_rows(g, streaming.sub_plan(self.plan, g["scenario_id"].unique()))

    def rows(self, scenario_ids: Sequence[str] | None = None, columns: Any = None) -> pd.DataFrame:
        """The rows the summary uses of the scenarios `scenario_ids` (default: every one)."""
        ids = [ps.id for ps in self.plan.scenarios] if scenario_ids is None else scenario_ids
        if self.rows_in_memory is not None:
            mine = self.rows_in_memory[self.rows_in_memory["scenario_id"].isin(list(ids))]
            return precision.used_rows(mine.reset_index(drop=True), self.plan)
        frame = ResultStore.reader(self.out_dir).read_scenario_rows(self.plan, ids, columns)
        return precision.used_rows(frame, streaming.sub_plan(self.plan, ids))

    @property
    def replications(self) -> pd.DataFrame:
        """Every row the summary uses, read at once (large studies: `rows`, `iter_rows`)."""
        return self.rows()

    def row_counts(self) -> tuple[int, int]:
        """(rows the summary uses, of them among the first `plan.replications`)."""
        if self.rows_initial < 0:
            keys = self.rows(columns=[])
            self.rows_done = len(keys)
            self.rows_initial = int((keys["replication"] < self.plan.replications).sum())
        return self.rows_done, self.rows_initial

    @property
    def complete(self) -> bool:
        """Every planned row is present (with `precision`: of the initial replications)."""
        return self.row_counts()[1] == self.plan.rows

    def set_aggregates(self, agg: streaming.Aggregates) -> None:
        self.summary, self.comparisons = agg.summary, agg.comparisons
        self.comparisons_detail, self.diagnosis = agg.detail, agg.diagnosis
        self.rows_done, self.rows_initial = agg.rows_done, agg.rows_initial
        self.replication_counts = agg.counts

    def report(self, width: int = 110) -> str:
        """The terminal report as text, with each scenario's workload characterisation."""
        from distsim.report.terminal import LARGE_SWEEP_SCENARIOS, render

        large = len(self.plan.scenarios) > LARGE_SWEEP_SCENARIOS  # summarised: no blocks
        return render(
            self.plan,
            self.summary,
            self.comparisons_detail,
            width=width,
            workloads=None if large else workload_lines(self.plan),
        )


# The terminal report's workload lines generate requests in the driver: at most this many per
# scenario, so a study of long replications keeps the driver's memory bounded (figures:
# benchmarks/README.md, driver memory).
CHARACTERIZE_MAX_REQUESTS = 500_000


def workload_lines(plan: Plan, replications: int = 30) -> dict[str, list[str]]:
    """Scenario id -> its workload characterisation (asked vs generated over the first
    `replications` replications, fewer if they would exceed `CHARACTERIZE_MAX_REQUESTS`;
    generation only, nothing is simulated). A data file that can no longer be read (e.g.
    `distsim report` elsewhere) gives a one-line note instead, and so does a scenario whose
    single replication exceeds the limit (`distsim workload SPEC` characterises it)."""
    from distsim.workload.characterize import characterize, summary_lines
    from distsim.workload.generate import arrival_rate_rps

    out: dict[str, list[str]] = {}
    for ps in plan.scenarios:
        try:
            wl, duration_s = ps.scenario.workload, ps.scenario.duration_s
            per_rep = arrival_rate_rps(wl, duration_s) * duration_s
            fit = int(CHARACTERIZE_MAX_REQUESTS // per_rep) if per_rep > 0 else replications
            if fit < 1:
                out[ps.id] = [
                    f"not characterised here: one replication is ~{per_rep:,.0f} requests "
                    f"(the report generates at most {CHARACTERIZE_MAX_REQUESTS:,}); "
                    "`distsim workload SPEC` prints it"
                ]
                continue
            n = max(1, min(plan.replications, replications, fit))
            out[ps.id] = summary_lines(characterize(ps.scenario, n))
        except DistsimError as exc:
            out[ps.id] = [f"not characterised: {exc}"]
    return out
