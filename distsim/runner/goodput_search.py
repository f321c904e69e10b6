"""Selection on a searched goodput (`select.objective: goodput_rps_per_gpu`).

Each candidate's goodput is found by `distsim.stats.rate_search` (bisection on a geometric grid
of arrival rates, common random numbers, each probe a t test at the level below); every probe
is a scenario of its own (the base scenario at that total arrival rate), stored like any other
row, so a resumed search reuses every probe already simulated.

Selection: with k candidates and at most L looks (the replications per probe double at each
look, from the study's `replications` to `select.max_replications`), every interval is built
at level 1 - alpha / (k L), so all intervals of all looks hold together with probability at
least the study's confidence (Bonferroni). A candidate whose interval lies entirely below the
best's is `eliminated`; the others are `tied` once every contender's interval is narrower than
a third of the indifference (relative), otherwise the contenders get the next look. When all
intervals hold, the true best is never eliminated; and when it is more than the indifference
ahead, intervals that narrow cannot overlap, so it is selected alone.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distsim.errors import SpecError
from distsim.runner.plan import Plan, PlannedScenario, scenario_id
from distsim.runner.selection import Rows, ScenarioSelection, SelectionResult, write_outputs
from distsim.runner.store import ResultStore, select_plan_rows
from distsim.runner.task import Unit, run_batch
from distsim.spec.selection import OBJECTIVES
from distsim.stats import rate_search
from distsim.stats import selection as rs
from distsim.stats.goodput import RATE_PATH


class Grid:
    """Probe scenarios: (planned scenario, total arrival rate) -> a PlannedScenario."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.by_key: dict[tuple[str, float], PlannedScenario] = {}

    def probe(self, ps: PlannedScenario, rate_rps: float) -> PlannedScenario:
        key = (ps.id, round(rate_rps, 12))
        hit = self.by_key.get(key)
        if hit is None:
            arrival = ps.scenario.workload.arrival
            if arrival is None or ps.scenario.workload.trace is not None:
                raise SpecError("select.goodput: the search needs workload.arrival (no trace)")
            workload = ps.scenario.workload.model_copy(
                update={"arrival": arrival.model_copy(update={"rate_rps": float(rate_rps)})}
            )
            scenario = ps.scenario.model_copy(update={"workload": workload})
            hit = PlannedScenario(
                scenario_id(scenario),
                len(self.by_key),
                scenario,
                {**ps.params, RATE_PATH: float(rate_rps)},
            )
            self.by_key[key] = hit
        return hit

    def as_plan(self) -> Plan:
        paths = tuple(dict.fromkeys([*self.plan.param_paths, RATE_PATH]))
        return Plan(
            study=self.plan.study,
            scenarios=tuple(self.by_key.values()),
            param_paths=paths,
            architectures=self.plan.architectures,
            baseline=self.plan.baseline,
            replications=self.plan.replications,
            confidence=self.plan.confidence,
        )


def _looks(n0: int, cap: int) -> int:
    return int(math.floor(math.log2(max(cap / n0, 1.0)))) + 1


def _step(
    plan: Plan, grid: Grid, ps: PlannedScenario, rows: Rows, reps: dict[str, int]
) -> tuple[ScenarioSelection, list[Unit], dict[str, rate_search.Search]]:
    study = plan.study
    sel = study.select
    assert sel is not None and sel.goodput is not None
    gs = sel.goodput
    obj = OBJECTIVES[sel.objective]
    archs = plan.architectures
    k = len(archs)
    alpha = 1.0 - study.confidence
    level = 1.0 - alpha / (k * _looks(study.replications, sel.max_replications))
    top = rate_search.grid_size(gs.low_rps_per_gpu, gs.high_rps_per_gpu, gs.rel_precision)
    out = ScenarioSelection(ps, sel.objective, "maximize", study.confidence, sel.indifference)
    searches: dict[str, rate_search.Search] = {}
    units: dict[tuple[str, int], list[str]] = {}
    for a in archs:
        per = obj.per(ps.scenario, ps.scenario.architectures[a])  # type: ignore[misc]
        att = {}
        for i in range(top + 1):
            rate = rate_search.grid_rate(gs.low_rps_per_gpu, gs.rel_precision, i) * per
            probe = grid.by_key.get((ps.id, round(rate, 12)))
            if probe is not None and (probe.id, a) in rows.cells:
                att[i] = rows.array(probe.id, a, "slo_attainment")
        s = rate_search.replay(
            att, gs.low_rps_per_gpu, gs.high_rps_per_gpu, gs.rel_precision, gs.attainment,
            level, reps[a],
        )  # fmt: skip
        if obj.scale is not None:  # the same search, reported in the objective's units
            f = obj.scale(ps.scenario, ps.scenario.architectures[a])
            s = dataclasses.replace(s, estimate=s.estimate * f, low=s.low * f, high=s.high * f)
        searches[a] = s
        if s.need is not None:
            rate = rate_search.grid_rate(gs.low_rps_per_gpu, gs.rel_precision, s.need) * per
            probe = grid.probe(ps, rate)
            have = rows.cells.get((probe.id, a), {})
            for r in range(reps[a]):
                if r not in have:
                    units.setdefault((probe.id, r), []).append(a)
    todo = [Unit(sid, r, tuple(a)) for (sid, r), a in sorted(units.items(), key=lambda x: x[0][1])]
    return out, todo, searches


def _rank(
    out: ScenarioSelection,
    searches: dict[str, rate_search.Search],
    reps: dict[str, int],
    rho: float,
) -> list[str]:
    """Fill the ranking; return the candidates that need another look (empty when decided)."""
    best = max(searches, key=lambda a: searches[a].estimate)
    b = searches[best]
    ranked: list[rs.Ranked] = []
    contenders = [best]
    for a, s in searches.items():
        n = reps[a] * len(s.probes)
        if a == best:
            continue
        worse = b.estimate / s.estimate - 1 if s.estimate > 0 else math.inf
        lo = b.low / s.high - 1 if s.high > 0 else math.inf
        hi = b.high / s.low - 1 if s.low > 0 else math.inf
        status = "eliminated" if s.high < b.low else "tied"
        if status == "tied":
            contenders.append(a)
        ranked.append(rs.Ranked(a, status, s.estimate, s.low, s.high, n, worse, lo, hi,  # type: ignore[arg-type]
                                note=s.censored))  # fmt: skip
    wide = [
        a
        for a in contenders
        if not (searches[a].high - searches[a].low) <= rho / 3 * max(searches[a].estimate, 1e-300)
    ]
    order = {"tied": 0, "eliminated": 1}
    ranked.sort(key=lambda r: (order[r.status], r.rel_worse))
    nb = reps[best] * len(b.probes)
    out.ranking = [rs.Ranked(best, "best", b.estimate, b.low, b.high, nb, note=b.censored), *ranked]
    return contenders if len(contenders) > 1 and wide else []


def drive(plan: Plan, grid: Grid, rows: Rows, simulate: Any) -> list[ScenarioSelection]:
    """Searches, looks and selection for every scenario; `simulate(units, plan)` adds rows."""
    sel = plan.study.select
    assert sel is not None
    reps = {(ps.id, a): plan.replications for ps in plan.scenarios for a in plan.architectures}
    while True:
        results = []
        units: list[Unit] = []
        for ps in plan.scenarios:
            mine = {a: reps[(ps.id, a)] for a in plan.architectures}
            out, todo, searches = _step(plan, grid, ps, rows, mine)
            units += todo
            results.append((ps, out, searches, mine))
        if units:
            before = rows.count()
            simulate(units, grid.as_plan())
            if rows.count() == before:
                raise SpecError("select: a wave of simulations produced no rows (they failed)")
            continue
        again = False
        for ps, out, searches, mine in results:
            more = _rank(out, searches, mine, sel.indifference)
            for a in more:
                if reps[(ps.id, a)] * 2 <= sel.max_replications:
                    reps[(ps.id, a)] *= 2
                    again = True
            if more and not again:
                out.notes.append(
                    "stopped at select.max_replications before the contenders' intervals were "
                    "narrow enough: tied candidates may differ by more than the indifference"
                )
        if not again:
            return [out for _, out, _, _ in results]


def local_simulator(rows: Rows) -> Any:
    def simulate(units: Sequence[Unit], plan: Plan) -> None:
        result = run_batch({ps.id: ps.scenario for ps in plan.scenarios}, units)
        if result.errors:
            raise SpecError(f"select: simulation failed: {result.errors[0]['error']}")
        rows.add(result.rows)

    return simulate


def search_study(
    plan: Plan,
    out: Path,
    address: str | None,
    workers: int | None,
    *,
    fresh: bool,
    progress: bool,
) -> SelectionResult:
    """`select_study` for a searched objective (same folder layout and outputs)."""
    from distsim.runner.selection import _manifest
    from distsim.runner.study import _LazyRay, _runner

    sel = plan.study.select
    assert sel is not None
    if sel.subject_to:
        raise SpecError("select.subject_to: not supported with a searched goodput objective")
    if RATE_PATH in plan.param_paths:
        raise SpecError(f"select.goodput: the search sets {RATE_PATH}; do not sweep it")
    scale = OBJECTIVES[sel.objective].scale
    if scale is not None:  # e.g. a missing price: one line before anything is written
        for ps in plan.scenarios:
            for a in plan.architectures:
                scale(ps.scenario, ps.scenario.architectures[a])
    t0 = time.perf_counter()
    result = SelectionResult(study=plan.study, plan=plan, out_dir=out)
    result.timings_s.update(ray_start=0.0, simulation=0.0, task_compute=0.0, task_cpu=0.0)
    grid = Grid(plan)
    with ResultStore.open(out, fresh=fresh) as store:
        stored, notes = store.all_rows()
        result.notes.extend(notes)
        rows = Rows()
        pending_rows = stored  # matched to probes as the grid grows
        store.write_spec(plan.study.model_dump(mode="json"))
        ray = _LazyRay(address, workers, result)  # type: ignore[arg-type]
        status = "running"

        def simulate(units: Sequence[Unit], probe_plan: Plan) -> None:
            from distsim.runner import execute
            from distsim.runner.study import _run_units

            session = ray.get()
            callbacks = _runner(probe_plan, store, result, on_rows=rows.add)  # type: ignore[arg-type]
            result.waves += 1
            total = sum(len(u.architectures) for u in units)
            with execute.ProgressBar(total=total, enabled=progress) as bar:
                _run_units(
                    session, units, {ps.id: ps.scenario for ps in probe_plan.scenarios},
                    lambda u: 1.0, callbacks, bar, result,  # type: ignore[arg-type]
                )  # fmt: skip

        def reuse_then_simulate(units: Sequence[Unit], probe_plan: Plan) -> None:
            nonlocal pending_rows
            mine = select_plan_rows(pending_rows, probe_plan)
            if not mine.empty:  # stored rows of probes the search has just reached
                before = rows.count()
                rows.add_frame(mine)
                result.rows_reused += rows.count() - before
                pending_rows = pending_rows.drop(mine.index)
                return
            simulate(units, probe_plan)

        try:
            result.scenarios = drive(plan, grid, rows, reuse_then_simulate)
            status = "complete"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            if status == "running":
                status = "failed"
            ray.close()
            if grid.by_key:
                store.consolidate(grid.as_plan())
            result.timings_s["total"] = time.perf_counter() - t0
            store.write_manifest(_manifest(result, status))
        write_outputs(result)
    return result
