"""`run_study`: a spec in, a finished (or resumed) study on disk and in memory out.

    spec -> plan (design) -> rows already on disk (store) -> missing units -> Ray (execute)
         -> part files as tasks finish -> replications.parquet -> summary / comparisons

Everything that can be wrong with the input is found before the output folder is touched.
The CLI's `distsim run` is a thin wrapper around this function.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from distsim.errors import DistsimError, SpecError, StoreError
from distsim.runner import aggregate, budget, precision, streaming, warmup
from distsim.runner.location import is_uri
from distsim.runner.parts import entry_keys
from distsim.runner.plan import Plan, expected_cost_per_unit, plan_study
from distsim.runner.result import StudyResult
from distsim.runner.store import (
    COMPARISONS_FILE,
    KEY,
    SPEC_FILE,
    SUMMARY_FILE,
    DamagedPartError,
    ResultStore,
    read_manifest,
)
from distsim.runner.task import BatchResult, Unit
from distsim.spec.study import Study, apply_overrides, load_study, validate_study
from distsim.stats import diagnostics

# Consolidate after this many new parts (a scenario's small parts are merged once it has more
# than a few: `store.MERGE_ABOVE_PARTS`), so a long run keeps few files.
CONSOLIDATE_EVERY_PARTS = 512


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@functools.cache  # asked for every manifest write; the source tree does not change meanwhile
def _git_commit() -> str | None:
    """The commit of the distsim source tree, when it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def resolve_study(
    spec_or_path: str | Path | Study | dict[str, Any],
    *,
    replications: int | None = None,
    overrides: dict[str, Any] | None = None,
) -> Study:
    """A validated study from a path, a mapping or a Study, with overrides applied."""
    if isinstance(spec_or_path, Study):
        study = spec_or_path
    elif isinstance(spec_or_path, dict):
        study = validate_study(spec_or_path)
    else:
        study = load_study(spec_or_path)
    merged = dict(overrides or {})
    if replications is not None:
        merged["replications"] = replications
    return apply_overrides(study, merged) if merged else study


def aggregate_rows(
    rows: pd.DataFrame, plan: Plan, parsed: aggregate.Parsed | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(summary, comparisons, comparisons with relative intervals) of published rows held in
    memory, by groups of scenarios as a run does from its folder (`parsed`: not used)."""
    agg = streaming.aggregate_groups(streaming.split_groups(rows, plan), plan)
    return agg.summary, agg.comparisons, agg.detail


def missing_units(rows: pd.DataFrame | None, plan: Plan) -> list[Unit]:
    """Units still to simulate, replication-major (every scenario gets early replications)."""
    have: set[tuple[str, str, int]] = set()
    if rows is not None and not rows.empty:
        have = set(
            zip(
                rows["scenario_id"],
                rows["architecture"],
                rows["replication"].astype(int),
                strict=True,
            )
        )
    units: list[Unit] = []
    for r in range(plan.replications):
        for ps in plan.scenarios:
            archs = tuple(a for a in plan.architectures if (ps.id, a, r) not in have)
            if archs:
                units.append(Unit(ps.id, r, archs))
    return units


def _manifest(
    plan: Plan, started: str, status: str, result: StudyResult, previous: dict[str, Any]
) -> dict[str, Any]:
    out = {
        "distsim": _version("distsim"),
        "python": platform.python_version(),
        "ray": _version("ray"),
        "simpy": _version("simpy"),
        "numpy": _version("numpy"),
        "git_commit": _git_commit(),
        "seed": plan.study.seed,
        "started_at": started,
        "finished_at": _now() if status != "running" else None,
        "status": status,
        "nodes": int(result.nodes or previous.get("nodes", 0) or 0),
        "cpus": int(result.cpus or previous.get("cpus", 0) or 0),
        "scenarios": [ps.id for ps in plan.scenarios],
        "architectures": list(plan.architectures),
        "replications": plan.replications,
        "rows_planned": plan.rows,
        "rows_done": max(result.rows_done, 0),
        "rows_reused": result.rows_reused,
        "rows_simulated": result.rows_simulated,
        "tasks": result.tasks,
        "failures": result.failures,
        "timings_s": {k: round(v, 4) for k, v in result.timings_s.items()},
    }
    # Pilots of other plans sharing the folder stay recorded (their warm-ups are work too).
    earlier = previous.get(warmup.MANIFEST_KEY)
    auto = {**(earlier if isinstance(earlier, dict) else {}), **warmup.manifest_records(plan)}
    if auto:
        out[warmup.MANIFEST_KEY] = auto
    if plan.study.precision is not None:
        out["precision"] = _precision_manifest(plan, result)
    return out


def _precision_manifest(plan: Plan, result: StudyResult) -> dict[str, Any]:
    """The precision block of manifest.json: target, replications per scenario, capped cells."""
    p = plan.study.precision
    assert p is not None
    st = precision.status(result.summary, plan)
    counts = result.replication_counts
    return {
        **p.model_dump(mode="json"),
        "waves": result.waves,
        "replications": counts,
        "met": bool(len(st) and st["met"].all()),
        "capped": [
            f"{r.scenario_id}/{r.architecture}/{r.metric}"
            for r in st.itertuples(index=False)
            if r.capped
        ],
    }


def _preload_aggregation_imports() -> None:
    """Import what aggregation and report.md need (scipy.stats, statsmodels, matplotlib: slow)
    on a background thread while Ray starts, instead of after the simulation. Best effort: an
    import that fails here fails again, with its real error, where it is used."""

    def work() -> None:
        with contextlib.suppress(Exception):
            import scipy.stats  # noqa: F401
            import statsmodels.stats.multitest  # noqa: F401

            from distsim.report import markdown as report_md

            report_md._plt()

    threading.Thread(target=work, name="distsim-preload", daemon=True).start()


def _status(text: str) -> None:
    """One progress line on stderr (the tables go to stdout)."""
    print(text, file=sys.stderr, flush=True)


class _LazyRay:
    """The Ray session of one run, started only when something has to be simulated, and shut
    down on a background thread (`close_soon`) while the driver aggregates."""

    def __init__(
        self,
        address: str | None,
        workers: int | None,
        result: StudyResult,
        expected_cpu_s: float | None = None,
        progress: bool = False,
    ) -> None:
        self.address, self.workers, self.result = address, workers, result
        self.progress = progress
        self.expected_cpu_s = expected_cpu_s
        self.session: Any = None
        self._stack: contextlib.ExitStack | None = None  # holds the open session
        self._closing: threading.Thread | None = None

    def get(self) -> Any:
        if self.session is None:
            self.close()  # a session closing in the background must be gone first
            from distsim.runner import execute  # imports Ray lazily, only when there is work

            _preload_aggregation_imports()
            if self.progress:
                _status(
                    "starting Ray ..."
                    if self.address is None
                    else f"joining Ray at {self.address} ..."
                )
            with contextlib.ExitStack() as stack:
                self.session = stack.enter_context(
                    execute.RaySession(
                        address=self.address,
                        workers=self.workers,
                        notes=self.result.notes,
                        expected_cpu_s=self.expected_cpu_s,
                    )
                )
                self._stack = stack.pop_all()
            self.result.timings_s["ray_start"] = self.session.start_s
            self.result.nodes = self.session.info.nodes
            self.result.cpus = self.session.info.cpus
        return self.session

    def close_soon(self) -> None:
        """Start shutting the session down on a background thread (Ray stops its processes one
        by one, giving each up to a second); `close` waits for it."""
        if self._stack is not None and self._closing is None:
            stack, self._stack, self.session = self._stack, None, None
            self._closing = threading.Thread(target=stack.close, name="distsim-ray-stop")
            self._closing.start()

    def close(self) -> None:
        """Shut the session down now, or wait for `close_soon` to finish."""
        if self._stack is not None:
            stack, self._stack, self.session = self._stack, None, None
            stack.close()
        if self._closing is not None:
            self._closing.join()
            self._closing = None


def _run_units(
    session: Any,
    units: Sequence[Unit],
    scenarios: dict[str, Any],
    cost: Any,
    callbacks: tuple[Any, Any],
    bar: Any,
    result: StudyResult | None = None,
    store: ResultStore | None = None,
) -> None:
    """Batch `units` and run them on `session`, `bar` advancing as rows arrive; with `result`,
    count the tasks and the simulation time there (even when interrupted); with `store`, tasks
    write their own parts there when it is reachable from them (`ResultStore.worker_sink`)."""
    from distsim.runner import execute

    on_result, on_failure = callbacks
    batches = execute.batch_units(units, cost, session.info.cpus)
    if result is not None:
        result.tasks += len(batches)
    t0 = time.perf_counter()
    try:
        session.run(
            batches,
            scenarios,
            on_result=on_result,
            on_failure=on_failure,
            progress=bar.progress,
            progress_task=bar.task,
            sink=None if store is None else store.worker_sink(session.info.nodes),
        )
    finally:
        if result is not None:
            result.timings_s["simulation"] += time.perf_counter() - t0


def run_study(
    spec_or_path: str | Path | Study | dict[str, Any],
    *,
    out_dir: str | Path | None = None,
    address: str | None = None,
    workers: int | None = None,
    replications: int | None = None,
    overrides: dict[str, Any] | None = None,
    fresh: bool = False,
    progress: bool = True,
    force: bool = False,
    export: bool = True,
) -> StudyResult:
    """Run (or resume) a study and return its results; they are also written under `out_dir`.

    `out_dir` defaults to `results/<name>`. Only (scenario, architecture, replication) rows not
    already stored are simulated; `fresh` deletes earlier results first. `address` (or
    RAY_ADDRESS) joins a Ray cluster; otherwise a local Ray instance with `workers` CPUs is
    started (by default all cores, or fewer when the study's expected simulation time cannot keep
    them busy: `execute.local_cpus`), or the session already initialised in this process is used.
    Raises `SpecError` / `StoreError` (one-line messages) before anything is written when the
    input is bad. A replication whose simulation raises is listed in `failures`; the rest of the
    study completes. KeyboardInterrupt is re-raised after every finished row is saved.
    A study estimated to be far beyond the machine (`distsim.runner.budget`) raises `TooLargeError`
    with the estimate, before anything is written, unless `force`. `export=False` writes no
    replications.parquet (a second copy of the plan's rows; `rows/` keeps every row) and removes
    a stale one; the run still reads every part once to verify it.

    `warmup_s: auto` scenarios are resolved first (a pilot per scenario, `distsim.runner.warmup`);
    with a `precision` block, waves of further replications follow the initial ones
    (`distsim.runner.precision`).
    """
    t_total = time.perf_counter()
    if workers is not None and workers < 1:
        raise SpecError(f"--workers: must be at least 1 (got {workers})")
    study = resolve_study(spec_or_path, replications=replications, overrides=overrides)
    plan = plan_study(study)
    estimate = budget.check(plan, budget.run_cpus(plan, address, workers), force=force)
    out = Path(out_dir) if out_dir is not None else Path("results") / study.name
    if not is_uri(out) and out.exists() and not out.is_dir():
        raise StoreError(f"{out}: exists and is not a folder")
    from distsim.runner.execute import check_address, resolve_address

    check_address(resolve_address(address))  # before anything is written
    if is_uri(out):  # an unusable URI or a missing bucket: one line, before anything else
        from distsim.runner.location import Location

        Location.parse(out).check_writable()

    if progress:  # at once: what will run, before Ray's few seconds of start-up
        _status(
            f"{study.name}: {len(plan.scenarios)} scenario(s) x {len(plan.architectures)} "
            f"architectures x {plan.replications} replications = {plan.rows} runs "
            f"(estimated ~{budget.format_duration(estimate.total_s)} including Ray start-up)"
        )
    with ResultStore.open(out, fresh=fresh) as store:
        previous = store.read_manifest()
        result = StudyResult(
            study=study,
            plan=plan,
            out_dir=out,
            rows_in_memory=None,
            summary=pd.DataFrame(),
            comparisons=pd.DataFrame(),
            comparisons_detail=pd.DataFrame(),
        )
        result.timings_s.update(ray_start=0.0, simulation=0.0, task_compute=0.0, task_cpu=0.0)
        # Sizes a local Ray instance (`execute.local_cpus`); precision waves add unknown work.
        expected = estimate.cpu_s if plan.study.precision is None else None
        ray = _LazyRay(address, workers, result, expected, progress=progress)
        try:
            _run(plan, store, result, previous, ray, t_total=t_total, progress=progress,
                 export=export)  # fmt: skip
        finally:
            ray.close()
    return result


def _run(
    plan: Plan,
    store: ResultStore,
    result: StudyResult,
    previous: dict[str, Any],
    ray: _LazyRay,
    *,
    t_total: float,
    progress: bool,
    export: bool = True,
) -> None:
    plan = warmup.resolve_plan(
        plan, previous, lambda todo: _run_pilots(todo, ray, result, progress=progress)
    )
    result.plan = plan
    # The keys of the plan's stored rows (no metrics, no payload): what is left to simulate.
    ours = _plan_keys(store, plan)
    planned = len(store.damaged)
    result.notes.extend(message for _, message in store.damaged)
    result.rows_reused = result.rows_done = len(ours)
    result.notes.extend(store.read_notes)
    kept = store.other_row_count(plan)
    if kept:
        result.notes.append(
            f"{kept} stored row(s) of other scenarios, architectures or "
            "replications (an earlier spec or override) are kept, not used in this summary; "
            f"they are reused when their plan comes back (`distsim prune {store.out_dir}` "
            "deletes them)"
        )
    for ps in plan.scenarios:
        rec = ps.warmup_auto
        if rec is not None:
            res = warmup.Resolution.from_record(rec)
            if res.unreliable():
                result.notes.append(
                    f"warmup_s auto, scenario {ps.label()}: the pilot of "
                    f"{', '.join(res.unreliable())} shows no steady state (the run is too short "
                    "or the system never settles); warmup_s is set to where MSER-5 stopped, "
                    f"{res.warmup_s:g} s"
                )
    started = _now()
    store.write_spec(plan.study.model_dump(mode="json"))
    store.write_manifest(_manifest(plan, started, "running", result, previous))
    status = "running"
    try:
        _simulate_missing(plan, ours, store, result, ray, progress=progress)
        if plan.study.precision is not None:
            _precision_waves(plan, store, result, ray, progress=progress)
        status = "complete"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if status == "running":  # an error other than Ctrl-C is on its way out
            status = "failed"
        # Ray's part is over: it stops while the rows are aggregated, unless a large study's
        # aggregation fans out over its workers (a local session only: they read the folder).
        fan_out = streaming.fan_out_session(ray.session, plan) if status == "complete" else None
        if fan_out is None:
            ray.close_soon()
        t_agg, cpu_agg = time.perf_counter(), time.process_time()
        repair = status == "complete"
        _consolidate(plan, ours, planned, store, result, ray, repair=repair, progress=progress,
                     export=export)  # fmt: skip
        result.rows_done, result.rows_initial, counts = streaming.count_used(store, plan)
        result.replication_counts = counts
        result.timings_s["consolidate"] = time.perf_counter() - t_agg  # and the counts
        if status == "complete" and not result.complete:
            status = "incomplete"
        # Every finished row is in replications.parquet now: record that before aggregating,
        # which can take a while (a second Ctrl-C then leaves a truthful manifest).
        store.write_manifest(_manifest(plan, started, status, result, previous))
        if status in ("complete", "incomplete"):  # interrupted/failed: `distsim report` rebuilds
            t_stats = time.perf_counter()
            result.set_aggregates(streaming.aggregate_store(store, plan, session=fan_out))
            result.timings_s["statistics"] = time.perf_counter() - t_stats
            ray.close_soon()
            store.write_csv(SUMMARY_FILE, result.summary)
            store.write_csv(COMPARISONS_FILE, result.comparisons)
            t_report = time.perf_counter()
            write_report_files(result)
            result.timings_s["report"] = time.perf_counter() - t_report  # part of aggregation
            result.timings_s["aggregation"] = time.perf_counter() - t_agg
            result.timings_s["aggregation_cpu"] = time.process_time() - cpu_agg  # the driver's
            result.timings_s["total"] = time.perf_counter() - t_total
            store.write_manifest(_manifest(plan, started, status, result, previous))


def _plan_keys(store: ResultStore, plan: Plan) -> pd.DataFrame:
    """The keys of the plan's stored rows. Reading them verifies the key columns of every part
    of the plan: a damaged part is set aside by the store (`DamagedPartError`, recorded in
    `store.damaged`) and its rows are then simply missing, simulated like any other."""
    while True:  # ends: each error takes one part out of the commit log
        try:
            return streaming.plan_keys(store, plan)
        except DamagedPartError:
            continue


def _consolidate(
    plan: Plan,
    reused: pd.DataFrame,
    planned: int,
    store: ResultStore,
    result: StudyResult,
    ray: _LazyRay,
    *,
    repair: bool,
    progress: bool,
    export: bool = True,
) -> None:
    """Consolidate and export replications.parquet (without `export`, read every part of the
    plan instead: `ResultStore.verify`, and remove a stale export): the run's read of every
    column of the plan's parts. Parts found damaged since planning (`store.damaged[planned:]`,
    set aside by the store) have their rows simulated again with `repair` (a run that finished
    its simulations), then the export starts over; otherwise (interrupted, failed) the next run
    simulates them and the export is skipped. Notes each damaged part; rows of them counted as
    reused are not."""
    done = planned
    while True:  # ends: each damaged part is taken out of the commit log once
        if repair and len(store.damaged) > done:
            done = len(store.damaged)
            _simulate_missing(plan, _plan_keys(store, plan), store, result, ray,
                              progress=progress)  # fmt: skip
            if plan.study.precision is not None:
                _precision_waves(plan, store, result, ray, progress=progress)
            continue
        try:
            store.consolidate(plan, export=export)
            if not export:
                store.verify(plan)
        except DamagedPartError:
            if repair:
                continue
        break
    if not export and store.drop_export():
        result.notes.append(
            "replications.parquet was removed (not written with --no-export: it would no "
            "longer match the stored rows); rows/ holds every row, and a run without "
            "--no-export writes it again without simulating anything"
        )
    for entry, _ in store.damaged[planned:]:
        if len(reused):
            result.rows_reused -= len(entry_keys([entry]).merge(reused[KEY], on=KEY))
    result.notes.extend(message for _, message in store.damaged[planned:])


def _run_pilots(
    todo: list[Any], ray: _LazyRay, result: StudyResult, *, progress: bool
) -> dict[str, warmup.Resolution]:
    """Run the pilots of auto-warm-up scenarios on Ray; their rows are not stored."""
    from distsim.runner import execute

    session = ray.get()
    scenarios = {ps.id: warmup.pilot_scenario(ps.scenario) for ps in todo}
    units = [u for ps in todo for u in warmup.pilot_units(ps)]
    rows: list[dict[str, Any]] = []
    errors: list[str] = []

    def on_result(batch: BatchResult) -> None:
        rows.extend(batch.rows)
        errors.extend(e["error"] for e in batch.errors)

    def on_failure(batch: Sequence[Unit], message: str) -> None:
        errors.append(message)

    total = sum(len(u.architectures) for u in units)
    with execute.ProgressBar(total=total, enabled=progress) as bar:
        _run_units(session, units, scenarios, lambda u: 1.0, (on_result, on_failure), bar)
    if errors:
        raise DistsimError(f"warmup_s: auto: the pilot failed: {errors[0]}")
    out = {}
    for ps in todo:
        mine = [r for r in rows if r["scenario_id"] == ps.id]
        out[ps.id] = warmup.resolve(ps.id, warmup.profiles_of(mine))
    return out


def _runner(
    plan: Plan, store: ResultStore, result: StudyResult, on_rows: Any = None
) -> tuple[Any, Any]:
    """(on_result, on_failure) callbacks that store rows and record failures."""
    scenarios = {ps.id: ps.scenario for ps in plan.scenarios}

    def on_result(batch: BatchResult) -> None:
        rows = batch.rows
        if batch.parts:  # written by the task itself (`ResultStore.worker_sink`): commit them
            store.commit_parts(batch.parts)
            if on_rows is not None:
                rows = store.read_parts(batch.parts)
        else:
            store.append(rows)
        result.rows_simulated += batch.row_count
        result.failures.extend(batch.errors)
        result.timings_s["task_compute"] += batch.compute_s
        result.timings_s["task_cpu"] += batch.cpu_s
        if on_rows is not None:
            on_rows(rows)
        if store.part_count() >= CONSOLIDATE_EVERY_PARTS:
            # A damaged part is set aside (`store.damaged`); its rows are simulated at the end.
            with contextlib.suppress(DamagedPartError):
                store.consolidate(plan, export=False)  # replications.parquet when the run ends

    def on_failure(batch: Sequence[Unit], message: str) -> None:
        for u in batch:
            for arch in u.architectures:
                result.failures.append(
                    {
                        "scenario_id": u.scenario_id,
                        "architecture": arch,
                        "replication": u.replication,
                        "seed": scenarios[u.scenario_id].seed,
                        "error": message,
                    }
                )

    return on_result, on_failure


def _cost(plan: Plan) -> Any:
    per_unit = {ps.id: expected_cost_per_unit(ps.scenario) for ps in plan.scenarios}
    n_arch = len(plan.architectures)

    def cost(u: Unit) -> float:
        return per_unit[u.scenario_id] * len(u.architectures) / n_arch

    return cost


def _simulate_missing(
    plan: Plan,
    ours: pd.DataFrame,
    store: ResultStore,
    result: StudyResult,
    ray: _LazyRay,
    *,
    progress: bool,
) -> None:
    """Simulate the rows of replications 0..replications-1 that are not stored yet."""
    units = missing_units(ours, plan)
    if not units:
        return
    from distsim.runner import execute

    session = ray.get()
    scenarios = {ps.id: ps.scenario for ps in plan.scenarios}
    todo = sum(len(u.architectures) for u in units)
    with execute.ProgressBar(total=plan.rows, done=plan.rows - todo, enabled=progress) as bar:
        callbacks = _runner(plan, store, result)
        _run_units(session, units, scenarios, _cost(plan), callbacks, bar, result, store)


def _precision_waves(
    plan: Plan,
    store: ResultStore,
    result: StudyResult,
    ray: _LazyRay,
    *,
    progress: bool,
) -> None:
    """Further waves until every cell meets the precision target or its scenario the cap.

    The tracker holds every stored row of the plan (those read at the start and those that
    arrived since); each wave is planned from the counts the rows give (`precision.totals`).
    """
    p = plan.study.precision
    assert p is not None
    tracker = precision.Tracker(plan)
    # Those stored before and by the initial phase.
    for group in store.iter_rows(plan, columns=streaming.tracked_columns(plan)):
        tracker.add_frame(group)
    callbacks = _runner(plan, store, result, on_rows=tracker.add)
    scenarios = {ps.id: ps.scenario for ps in plan.scenarios}
    with contextlib.ExitStack() as stack:
        bar: Any = None
        while True:
            current = tracker.totals()
            needed = {sid: tracker.needed(sid, n) for sid, n in current.items()}
            if not any(needed[s] > n and n < p.max_replications for s, n in current.items()):
                return
            from distsim.runner import execute

            session = ray.get()
            wave = diagnostics.next_wave(current, needed, session.info.cpus, p.max_replications)
            units = precision.wave_units(plan, current, wave, tracker)
            if not units:
                return
            if bar is None:
                bar = stack.enter_context(execute.ProgressBar(total=0, enabled=progress))
            rows = sum(len(u.architectures) for u in units)
            if bar.progress is not None:
                bar.progress.update(bar.task, total=bar.progress.tasks[0].total + rows)
            result.waves += 1
            _run_units(session, units, scenarios, _cost(plan), callbacks, bar, result, store)
            if tracker.totals() == current:
                result.notes.append(
                    "precision: a wave added no complete replication (its simulations failed); "
                    "stopped"
                )
                return


def write_report_files(
    result: StudyResult, *, tables: bool = False, parsed: aggregate.Parsed | None = None
) -> Path:
    """report.md with its plots and summary.json (and, with `tables`, summary.csv and
    comparisons.csv) in the result's folder, from its rows; returns report.md's path.
    `parsed`: payload already parsed by `aggregate_rows` on the same rows."""
    from distsim.report.markdown import write_report
    from distsim.runner.store import atomic_write_chunks, csv_chunks

    if tables:
        atomic_write_chunks(result.out_dir / SUMMARY_FILE, csv_chunks(result.summary))
        atomic_write_chunks(result.out_dir / COMPARISONS_FILE, csv_chunks(result.comparisons))
    from distsim.report.markdown import plotted_scenarios

    diag = result.diagnosis
    if diag is None:
        diag = streaming.aggregate_groups(result.iter_rows(), result.plan).diagnosis
    # Only the scenarios the report plots are read (their sketches draw the distributions).
    rows = result.rows(plotted_scenarios(result.plan, result.comparisons_detail))
    return write_report(
        result.out_dir,
        result.plan,
        rows,
        result.summary,
        result.comparisons_detail,
        diag,
        result.notes,
    )


def _stored_plan(out: Path) -> Plan:
    """The resolved plan of a results folder's spec.yaml (`distsim report`, `distsim prune`)."""
    return warmup.stored_plan(plan_study(stored_study(out)), read_manifest(out))


def stored_study(out: Path) -> Study:
    """The study of a results folder's spec.yaml, a local folder or an object-store URI;
    `StoreError` (one line) when there is no such folder or spec."""
    if is_uri(out):  # an object store: the spec is read into a local temporary file
        import tempfile

        from distsim.runner.location import Location

        loc = Location.parse(out)
        try:
            text = loc.read_bytes(SPEC_FILE)
        except FileNotFoundError:
            raise StoreError(
                f"{loc.where()}: not a distsim results folder (no {SPEC_FILE})"
            ) from None
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / SPEC_FILE).write_bytes(text)
            try:
                return load_study(Path(tmp) / SPEC_FILE)
            except SpecError as exc:
                raise StoreError(f"{loc.where(SPEC_FILE)}: {exc}") from None
    spec_path = out / SPEC_FILE
    if not out.is_dir():
        raise StoreError(f"{out}: no such results folder")
    if not spec_path.is_file():
        raise StoreError(f"{out}: not a distsim results folder (no {SPEC_FILE})")
    try:
        return load_study(spec_path)
    except SpecError as exc:
        raise StoreError(f"{spec_path}: {exc}") from None


def load_result(out_dir: str | Path) -> StudyResult:
    """A stored study's results, aggregated again from its rows; nothing is simulated or written.

    Reads spec.yaml and the stored rows (replications.parquet and any part files of an
    interrupted run).
    """
    out = Path(out_dir)
    plan = _stored_plan(out)
    reader = ResultStore.reader(out)
    result = StudyResult(
        study=plan.study,
        plan=plan,
        out_dir=out,
        rows_in_memory=None,
        summary=pd.DataFrame(),
        comparisons=pd.DataFrame(),
        comparisons_detail=pd.DataFrame(),
    )
    result.set_aggregates(streaming.aggregate_store(reader, plan))
    result.notes.extend(reader.read_notes)
    if result.rows_done == 0:
        result.notes.append("no replications stored yet")
    return result


def prune(out_dir: str | Path, *, dry_run: bool = False) -> tuple[Plan, pd.DataFrame]:
    """Delete the stored rows of a results folder that are outside its spec.yaml's plan (rows
    of earlier specs or overrides, kept until now); returns the plan and the rows removed (with
    `dry_run`: that would be). The only deletion of rows besides `--fresh`."""
    out = Path(out_dir)
    plan = _stored_plan(out)
    with ResultStore.open(out) as store:
        return plan, store.prune(plan, dry_run=dry_run)
