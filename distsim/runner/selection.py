"""`select_study`: run a study's candidates sequentially until the best is known (`distsim select`).

    spec -> plan -> stored rows -> first stage (every candidate, `replications` each)
         -> set apart the overloaded -> replay the procedure on the rows (stats.selection)
         -> simulate what it asks for next (contenders only) -> ... -> selection.json, report.md

The procedure is replayed from the rows after every wave, so what is decided depends only on
the rows, never on how they were produced: an interrupted selection resumes like `distsim run`
(stored rows are reused, the same looks are made) and a finished one reruns nothing.
`goodput_rps_per_gpu` objectives go through `distsim.runner.goodput_search` instead.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from distsim.errors import DistsimError, SpecError, StoreError
from distsim.runner import budget
from distsim.runner.aggregate import overload_reason
from distsim.runner.location import is_uri
from distsim.runner.plan import Plan, PlannedScenario, plan_study
from distsim.runner.store import (
    ResultStore,
    atomic_write_text,
    read_rows,
    select_plan_rows,
)
from distsim.runner.task import Unit, run_batch
from distsim.spec.study import Study
from distsim.stats import selection as rs

SELECTION_FILE = "selection.json"
Simulate = Callable[[Sequence[Unit]], None]


def overloaded(ps: PlannedScenario, arch: str, cell: pd.DataFrame) -> str:
    """Why this candidate is set apart as `unstable` ("" when it is not): the same decision
    `distsim run` takes (`aggregate.overload_reason`: offered load >= 1 on a pool for the
    exclusive engine; for any engine, TTFT growing through the run in every replication)."""
    reason = overload_reason(ps, arch, cell)
    return reason.removeprefix(f"{arch} is ")


def settings_of(study: Study) -> rs.Settings:
    s = study.select
    assert s is not None
    return rs.Settings(
        goal=s.goal,  # type: ignore[arg-type]
        indifference=s.indifference,
        confidence=study.confidence,
        n0=study.replications,
        stage=s.stage_replications,
        max_replications=s.max_replications,
        constraints=tuple(rs.Constraint(c.metric, c.bound, c.threshold) for c in s.subject_to),
    )


class Rows:
    """Every row of the selection so far, by (scenario, architecture) and replication."""

    def __init__(self) -> None:
        self.cells: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}

    def add(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            key = (str(row["scenario_id"]), str(row["architecture"]))
            self.cells.setdefault(key, {}).setdefault(int(row["replication"]), dict(row))

    def add_frame(self, frame: pd.DataFrame) -> None:
        if not frame.empty:
            self.add(frame.to_dict("records"))

    def count(self) -> int:
        return sum(len(c) for c in self.cells.values())

    def array(self, sid: str, arch: str, metric: str) -> np.ndarray:
        cell = self.cells.get((sid, arch), {})
        n = max(cell, default=-1) + 1
        out = np.full(n, np.nan)
        for rep, row in cell.items():
            value = row.get(metric)
            if value is not None:
                out[rep] = float(value)
        return out

    def frame(self, sid: str, arch: str, upto: int) -> pd.DataFrame:
        cell = self.cells.get((sid, arch), {})
        return pd.DataFrame([cell[r] for r in sorted(cell) if r < upto])


@dataclass
class ScenarioSelection:
    """The answer for one scenario."""

    scenario: PlannedScenario
    objective: str
    goal: str
    confidence: float
    indifference: float
    ranking: list[rs.Ranked] = field(default_factory=list)
    decision: rs.Decision | None = None
    unstable: list[str] = field(default_factory=list)
    constraints: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def best(self) -> str | None:
        return next((r.architecture for r in self.ranking if r.status == "best"), None)

    @property
    def tied(self) -> list[str]:
        return [r.architecture for r in self.ranking if r.status == "tied"]

    @property
    def replications_used(self) -> int:
        return sum(r.replications for r in self.ranking)

    def to_json(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return None if not math.isfinite(x) else float(x)

        return {
            "scenario_id": self.scenario.id,
            **({"params": self.scenario.params} if self.scenario.params else {}),
            "objective": self.objective,
            "goal": self.goal,
            "confidence": self.confidence,
            "indifference": self.indifference,
            "best": self.best,
            "tied": self.tied,
            "replications_used": self.replications_used,
            "capped": bool(self.decision.capped) if self.decision else False,
            "ranking": [
                {
                    "architecture": r.architecture,
                    "estimate": num(r.estimate),
                    "ci_low": num(r.ci_low),
                    "ci_high": num(r.ci_high),
                    "replications": r.replications,
                    "status": r.status,
                    "rel_worse": num(r.rel_worse),
                    "rel_worse_low": num(r.rel_low),
                    "rel_worse_high": num(r.rel_high),
                    **({"note": r.note} if r.note else {}),
                }
                for r in self.ranking
            ],
            "notes": self.notes,
        }


@dataclass
class SelectionResult:
    """What `select_study` returns (and writes to selection.json)."""

    study: Study
    plan: Plan
    out_dir: Path
    scenarios: list[ScenarioSelection] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rows_reused: int = 0
    rows_simulated: int = 0
    waves: int = 0
    nodes: int = 0
    cpus: int = 0
    tasks: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"scenarios": [s.to_json() for s in self.scenarios]}

    def report(self) -> str:
        from distsim.report.selection import terminal_lines

        return "\n".join(terminal_lines(self))


# ---------------------------------------------------------------- the sequential loop


def _units(sid: str, needs: dict[str, int], rows: Rows) -> list[Unit]:
    """Replication-major units bringing each listed architecture to its needed count."""
    units: list[Unit] = []
    for r in range(max(needs.values(), default=0)):
        archs = tuple(
            a for a, n in needs.items() if r < n and r not in rows.cells.get((sid, a), {})
        )
        if archs:
            units.append(Unit(sid, r, archs))
    return units


def _step(plan: Plan, ps: PlannedScenario, rows: Rows) -> tuple[ScenarioSelection, list[Unit]]:
    """Where one scenario stands, and the units it needs next (none when decided)."""
    study = plan.study
    sel = study.select
    assert sel is not None
    settings = settings_of(study)
    out = ScenarioSelection(ps, sel.objective, str(sel.goal), study.confidence, sel.indifference)
    n0 = settings.n0
    first = {a: n0 for a in plan.architectures}
    units = _units(ps.id, first, rows)
    if units:
        return out, units
    reasons = {a: overloaded(ps, a, rows.frame(ps.id, a, n0)) for a in plan.architectures}
    out.unstable = [a for a in plan.architectures if reasons[a]]
    stable = [a for a in plan.architectures if a not in out.unstable]
    objective = {a: rows.array(ps.id, a, sel.objective) for a in stable}
    cons = {a: {c.metric: rows.array(ps.id, a, c.metric) for c in sel.subject_to} for a in stable}
    try:
        decision = rs.replay(objective, cons, settings)
    except ValueError as exc:
        raise DistsimError(f"select.objective: {sel.objective}: {exc}") from None
    out.decision = decision
    if not decision.done:
        return out, _units(ps.id, decision.needs, rows)
    unstable_values = {a: rows.array(ps.id, a, sel.objective) for a in out.unstable}
    out.ranking = rs.rank(
        decision, objective, settings, out.unstable, unstable_values,
        {a: reasons[a] for a in out.unstable},
    )  # fmt: skip
    out.constraints = _constraint_lines(decision, cons, settings)
    if decision.capped:
        out.notes.append(
            f"stopped at select.max_replications ({settings.max_replications}) with "
            f"{len(decision.contenders)} contenders left: the stated probability of correct "
            "selection does not apply; raise the cap"
        )
    return out, []


def _constraint_lines(
    decision: rs.Decision, cons: dict[str, dict[str, np.ndarray]], settings: rs.Settings
) -> list[dict[str, Any]]:
    """Per candidate and constraint: the mean with its interval and the decision."""
    out = []
    for a, metrics in cons.items():
        for c in settings.constraints:
            x = metrics[c.metric]
            n = rs.complete_prefix(x)
            est, lo, hi = rs.mean_ci(x[:n], settings.confidence)
            if a in decision.infeasible and decision.infeasible[a][0] == c.metric:
                verdict = "violated"
            elif c.metric in decision.feasible.get(a, []):
                verdict = "met"
            else:
                verdict = "undecided"
            out.append(
                {"architecture": a, "metric": c.metric, "bound": c.bound,
                 "threshold": c.threshold, "estimate": est, "ci_low": lo, "ci_high": hi,
                 "replications": n, "decision": verdict}
            )  # fmt: skip
    return out


def drive(
    plan: Plan, rows: Rows, simulate: Simulate, max_waves: int = 100_000
) -> list[ScenarioSelection]:
    """Alternate replaying and simulating until every scenario is decided.

    `simulate(units)` must add the rows it produces to `rows`. A wave that adds nothing (its
    simulations failed) ends the loop with the scenarios still open reported as undecided."""
    for _ in range(max_waves):
        steps = [_step(plan, ps, rows) for ps in plan.scenarios]
        units = [u for _, us in steps for u in us]
        if not units:
            return [s for s, _ in steps]
        before = rows.count()
        simulate(units)
        if rows.count() == before:
            raise DistsimError(
                "select: a wave of simulations produced no rows (they failed); see the errors"
            )
    raise DistsimError("select: too many waves")  # pragma: no cover


def local_simulator(plan: Plan, rows: Rows) -> Simulate:
    """Simulate in this process (tests, notebooks): no Ray, no store."""
    scenarios = {ps.id: ps.scenario for ps in plan.scenarios}

    def simulate(units: Sequence[Unit]) -> None:
        result = run_batch(scenarios, units)
        if result.errors:
            raise DistsimError(f"select: simulation failed: {result.errors[0]['error']}")
        rows.add(result.rows)

    return simulate


# ---------------------------------------------------------------- the command


def select_study(
    spec_or_path: str | Path | Study | dict[str, Any],
    *,
    out_dir: str | Path | None = None,
    address: str | None = None,
    workers: int | None = None,
    overrides: dict[str, Any] | None = None,
    fresh: bool = False,
    progress: bool = True,
    force: bool = False,
) -> SelectionResult:
    """Choose the best candidate of every scenario of a study with a `select` block; results
    (rows, selection.json, report.md, manifest.json) go to `out_dir` (default
    results/<name>-select). Stored rows are reused; Ctrl-C keeps every finished row."""
    from distsim.runner.study import _LazyRay, _runner, resolve_study

    t0 = time.perf_counter()
    if workers is not None and workers < 1:
        raise SpecError(f"--workers: must be at least 1 (got {workers})")
    study = resolve_study(spec_or_path, overrides=overrides)
    if study.select is None:
        raise SpecError("select: the spec has no select block (objective, indifference, ...)")
    if study.warmup_s == "auto":
        raise SpecError("warmup_s: auto is not supported by select yet; give seconds")
    plan = plan_study(study)
    budget.check(plan, budget.planned_cpus(address, workers), force=force)
    out = Path(out_dir) if out_dir is not None else Path("results") / f"{study.name}-select"
    if not is_uri(out) and out.exists() and not out.is_dir():
        raise StoreError(f"{out}: exists and is not a folder")
    if study.select.searched:
        from distsim.runner.goodput_search import search_study

        return search_study(plan, out, address, workers, fresh=fresh, progress=progress)
    result = SelectionResult(study=study, plan=plan, out_dir=out)
    result.timings_s.update(ray_start=0.0, simulation=0.0, task_compute=0.0, task_cpu=0.0)
    with ResultStore.open(out, fresh=fresh) as store:
        stored, notes = store.all_rows(plan.id_aliases)
        result.notes.extend(notes)
        rows = Rows()
        ours = select_plan_rows(stored, plan)
        rows.add_frame(ours)
        result.rows_reused = len(ours)
        store.write_spec(study.model_dump(mode="json"))
        ray = _LazyRay(address, workers, result)  # type: ignore[arg-type]
        status = "running"
        try:
            on_result, on_failure = _runner(plan, store, result, on_rows=rows.add)  # type: ignore[arg-type]

            def simulate(units: Sequence[Unit]) -> None:
                from distsim.runner import execute
                from distsim.runner.study import _cost, _run_units

                session = ray.get()
                result.waves += 1
                total = sum(len(u.architectures) for u in units)
                with execute.ProgressBar(total=total, enabled=progress) as bar:
                    _run_units(
                        session, units, {ps.id: ps.scenario for ps in plan.scenarios},
                        _cost(plan), (on_result, on_failure), bar, result,  # type: ignore[arg-type]
                    )  # fmt: skip

            result.scenarios = drive(plan, rows, simulate)
            status = "complete"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            if status == "running":
                status = "failed"
            ray.close()
            store.consolidate(plan)
            result.timings_s["total"] = time.perf_counter() - t0
            store.write_manifest(_manifest(result, status))
        write_outputs(result)
    return result


def _manifest(result: SelectionResult, status: str) -> dict[str, Any]:
    from distsim.runner.study import _git_commit, _now, _version

    return {
        "command": "select",
        "distsim": _version("distsim"),
        "git_commit": _git_commit(),
        "seed": result.study.seed,
        "finished_at": _now(),
        "status": status,
        "scenarios": [ps.id for ps in result.plan.scenarios],
        "architectures": list(result.plan.architectures),
        "rows_reused": result.rows_reused,
        "rows_simulated": result.rows_simulated,
        "waves": result.waves,
        "tasks": result.tasks,
        "failures": result.failures,
        "timings_s": {k: round(v, 4) for k, v in result.timings_s.items()},
    }


def write_outputs(result: SelectionResult) -> None:
    """selection.json and report.md (with the ranking plot) in the result's folder."""
    from distsim.report.selection import write_report

    text = json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n"
    atomic_write_text(result.out_dir / SELECTION_FILE, text)
    write_report(result)


class _Incomplete(Exception):
    pass


def _nothing(*_: Any) -> None:
    raise _Incomplete


def load_selection(out_dir: str | Path) -> SelectionResult:
    """A stored selection re-derived from its rows (nothing is simulated); selection.json and
    report.md are written again. `StoreError` when the folder holds no finished selection."""
    from distsim.runner.study import stored_study

    out = Path(out_dir)
    study = stored_study(out)  # a local folder or an object-store URI
    if study.select is None:
        raise StoreError(f"{out}: not a selection (its spec has no select block)")
    plan = plan_study(study)
    stored, notes, _ = read_rows(out, plan.id_aliases)
    result = SelectionResult(study=study, plan=plan, out_dir=out, notes=notes)
    rows = Rows()
    try:
        if study.select.searched:
            from distsim.runner import goodput_search as gs

            pending = stored

            def reuse(units: Sequence[Unit], probe_plan: Plan) -> None:
                nonlocal pending
                mine = select_plan_rows(pending, probe_plan)
                if mine.empty:
                    raise _Incomplete
                rows.add_frame(mine)
                pending = pending.drop(mine.index)

            result.scenarios = gs.drive(plan, gs.Grid(plan), rows, reuse)
        else:
            rows.add_frame(select_plan_rows(stored, plan))
            result.scenarios = drive(plan, rows, _nothing)
    except _Incomplete:
        raise StoreError(
            f"{out}: the selection is not finished; run `distsim select` on its spec again"
        ) from None
    result.rows_reused = rows.count()
    write_outputs(result)
    return result
