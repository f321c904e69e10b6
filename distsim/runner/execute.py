"""Running units on Ray: start or join a cluster, stream batches back, show progress.

The only module that imports Ray (lazily, so planning, `validate` and `report` never start it).

- No address: a new local Ray instance with `workers` CPUs (default: all cores, fewer for a study
  too small to keep them busy: `local_cpus`), on loopback only
  (127.0.0.1; checked with `ray.nodes()` after start), no dashboard, no usage reporting. It is
  shut down when the run ends.
- `address` (or `RAY_ADDRESS`): join that cluster. The driver ships its own `distsim` package in
  the runtime environment (`py_modules`), so workers run exactly the driver's code; nodes need only
  distsim's dependencies. Leaving disconnects; the cluster keeps running.
- Ray already initialised in this process: use that session as is and never shut it down.

One Ray task runs a batch of (scenario, replication) units, each simulating every architecture on
one shared workload (`distsim.runner.task.run_batch`). Batches are sized so a task carries enough
work to
make scheduling overhead small while leaving several tasks per CPU for load balance. Results
stream back with `ray.wait` as tasks finish. Ray retries a task whose worker or node died
(`max_retries`); a task that still fails is reported with its units, and the rest goes on.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from distsim.errors import DistsimError, first_line
from distsim.runner.task import BatchResult, Unit, load_kernels, run_batch
from distsim.spec.study import Scenario

LOOPBACK = "127.0.0.1"
# A task should carry about this many simulated requests (exclusive-engine equivalents, see
# `plan.ENGINE_COST`): long enough with the compiled engine that Ray's dispatch and result
# transfer per task are a few percent of it (figures: benchmarks/README.md) ...
TARGET_TASK_REQUESTS = 1_000_000
# ... but there should be at least this many tasks per CPU, so the last ones balance out.
TASKS_PER_CPU = 8
# ... and at most this many units per task: a task's rows reach the driver at once, so tiny units
# (few requests each) must not make tasks of tens of thousands of rows.
MAX_TASK_UNITS = 1024
# Tasks in flight per CPU: enough to keep every worker busy without queueing the whole study.
IN_FLIGHT_PER_CPU = 4
# Ray re-runs a task this many times when its worker process or node dies.
MAX_RETRIES = 3
# Starting one local Ray worker and loading distsim and its kernels into it costs about this much
# CPU time (benchmarks/bench_runner.py). Without --workers, a local run starts one worker per
# this much expected simulation (at least one, at most one per core): a study with less
# simulation than that is done sooner by one warm worker than by two that both start up.
WORKER_START_CPU_S = 1.5

OnResult = Callable[[BatchResult], None]
OnFailure = Callable[[Sequence[Unit], str], None]


@dataclass
class ClusterInfo:
    """What a run used: alive nodes and their CPUs, and how distsim got the session."""

    nodes: int
    cpus: int
    mode: str  # "local" (started here), "address" (joined), "existing" (already initialised)
    address: str | None = None


def local_cpus(workers: int | None, expected_cpu_s: float | None) -> int:
    """CPUs of a local Ray instance: `workers` if given; else one per core, or fewer when the
    expected simulation CPU time (None: unknown) cannot keep them busy (`WORKER_START_CPU_S`)."""
    if workers:
        return workers
    cores = os.cpu_count() or 1
    if expected_cpu_s is None or not math.isfinite(expected_cpu_s):
        return cores
    return max(1, min(cores, 1 + int(expected_cpu_s // WORKER_START_CPU_S)))


def resolve_address(address: str | None) -> str | None:
    """`--address`, else the RAY_ADDRESS environment variable, else None (start locally)."""
    return address or os.environ.get("RAY_ADDRESS") or None


# How long `check_address` waits for a TCP connection to the cluster's address.
CONNECT_TIMEOUT_S = 10.0


def check_address(address: str | None, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast, in one line, when a `--address host:port` has no Ray cluster behind it.

    `ray.init` would retry for minutes, printing multi-line warnings. This opens (and closes)
    one TCP connection first; "auto" and addresses that are not host:port are left to Ray.
    Skipped when this process already has a Ray session (the address is then ignored)."""
    if address is None or address == "auto":
        return
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return
    target = address.split("://", 1)[1] if "://" in address else address
    host, sep, port_text = target.rstrip("/").rpartition(":")
    if not sep or not host or not port_text.isdigit() or host.startswith("["):
        return
    try:
        with socket.create_connection((host, int(port_text)), timeout=timeout_s):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc)).lower()
        raise DistsimError(
            f"no Ray cluster at {target} ({why}): start one with 'ray start --head' "
            "or drop --address"
        ) from None


def _import_ray(local: bool) -> Any:
    """Import Ray; before a local start, make it advertise 127.0.0.1 instead of the LAN address."""
    if local:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if local:
        # If Ray was imported before the variable was set, its constant is already fixed.
        # Ray reads it through the module at call time; the address is verified after start.
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    return ray


def _ray_error(exc: BaseException) -> str:
    """`Type: first line` of an error from Ray, or of the task error it wraps (`.cause`)."""
    cause = getattr(exc, "cause", None)
    err = cause if isinstance(cause, BaseException) else exc
    message = first_line(err) if str(err).strip() else ""
    return f"{type(err).__name__}: {message}".rstrip(": ")


class RaySession:
    """A Ray session for one study run; a context manager that cleans up what it started."""

    def __init__(
        self,
        *,
        address: str | None = None,
        workers: int | None = None,
        notes: list[str],
        expected_cpu_s: float | None = None,
    ) -> None:
        self.address = resolve_address(address)
        self.workers = workers
        self.expected_cpu_s = expected_cpu_s  # sizes a local instance without `workers`
        self.notes = notes
        self.info = ClusterInfo(0, 0, "local")
        self.start_s = 0.0
        self._ray: Any = None
        self._owned = False

    def __enter__(self) -> RaySession:
        t0 = time.perf_counter()
        try:
            self._connect()
            self._warm_workers()
        except BaseException:  # Ctrl-C while Ray starts: stop what was started, then re-raise
            self._stop_partial()
            raise
        self.start_s = time.perf_counter() - t0
        return self

    def _stop_partial(self) -> None:
        """Shut down a session this object was starting (`ray.init` may have launched Ray's
        processes before an interrupt reached it); a joined or existing session is left."""
        ray = self._ray
        if ray is None or self.info.mode == "existing":
            return
        if self._owned or self.address is None:  # shutdown also stops a half-started node
            with contextlib.suppress(Exception):
                ray.shutdown()
            self._owned = False

    def _warm_workers(self) -> None:
        """One warm-up task per CPU: workers import distsim and load the compiled kernels
        (in parallel) before the study's tasks, which then measure simulation only."""
        ray = self._ray
        warm = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(load_kernels)
        try:
            ray.get([warm.remote() for _ in range(self.info.cpus)])
        except ray.exceptions.RayError as exc:  # the study's tasks will report it per batch
            self.notes.append(f"worker warm-up failed: {_ray_error(exc)}")

    def __exit__(self, *exc: object) -> None:
        if self._owned and self._ray is not None:
            self._ray.shutdown()
            self._owned = False

    def map_tasks(
        self, fn: Callable[[Any, Any], Any], shared: Any, items: Sequence[Any]
    ) -> Iterator[Any]:
        """`fn(shared, item)` for every item, each a Ray task (`shared` is put in the object
        store once), yielded in item order as they finish; an item whose task failed yields the
        exception instead, for the caller to redo it. Used to fan out aggregation."""
        ray = self._ray
        remote = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(fn)
        ref = ray.put(shared)
        refs = [remote.remote(ref, item) for item in items]
        for r in refs:
            try:
                yield ray.get(r)
            except ray.exceptions.RayError as exc:
                yield exc

    def _connect(self) -> None:
        already = "ray" in sys.modules and sys.modules["ray"].is_initialized()
        local = not already and self.address is None
        ray = self._ray = _import_ray(local)
        if already:
            if self.workers is not None:
                self.notes.append("--workers does not apply: using the Ray session already running")
            if self.address is not None:
                self.notes.append("--address ignored: using the Ray session already running")
            self.info = self._cluster("existing", None)
            return
        quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
        if self.address is not None:
            if self.workers is not None:
                self.notes.append("--workers does not apply when joining a cluster (--address)")
            import distsim

            try:
                ray.init(address=self.address, runtime_env={"py_modules": [distsim]}, **quiet)
            except Exception as exc:  # ConnectionError, RuntimeError, ValueError, ...
                raise DistsimError(
                    f"--address {self.address}: cannot join the Ray cluster: {_ray_error(exc)}"
                ) from None
            self._owned = True
            self.info = self._cluster("address", self.address)
            return
        cpus = local_cpus(self.workers, self.expected_cpu_s)
        try:
            ray.init(
                address="local",
                num_cpus=cpus,
                include_dashboard=False,
                dashboard_host=LOOPBACK,
                _node_ip_address=LOOPBACK,
                **quiet,
            )
        except Exception as exc:  # a start that times out on a loaded machine, a full /tmp, ...
            raise DistsimError(
                f"could not start a local Ray instance ({_ray_error(exc)}); nothing was "
                "simulated: run again, or start one with 'ray start --head' and pass --address"
            ) from None
        self._owned = True
        addresses = {n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")}
        if addresses != {LOOPBACK}:
            ray.shutdown()
            self._owned = False
            raise DistsimError(
                f"the local Ray instance did not bind to {LOOPBACK} only ({sorted(addresses)}); "
                "refusing to run"
            )
        self.info = self._cluster("local", None)

    def _cluster(self, mode: str, address: str | None) -> ClusterInfo:
        ray = self._ray
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        cpus = int(ray.cluster_resources().get("CPU", 0))
        return ClusterInfo(nodes=nodes, cpus=max(cpus, 1), mode=mode, address=address)

    # ---------------------------------------------------------------- running

    def _ship_data(self, scenarios: Mapping[str, Scenario]) -> Any:
        """The data files the scenarios read, parsed once here and put in Ray's object store
        (one ref every task receives; None when no scenario reads a file)."""
        from distsim.workload.generate import data_files
        from distsim.workload.trace_files import snapshot

        files: list[tuple[str, str | None]] = []
        for scenario in scenarios.values():
            files += [f for f in data_files(scenario.workload) if f not in files]
        return self._ray.put(snapshot(files)) if files else None

    def run(
        self,
        batches: Sequence[Sequence[Unit]],
        scenarios: Mapping[str, Scenario],
        *,
        on_result: OnResult,
        on_failure: OnFailure,
        progress: Progress | None = None,
        progress_task: Any = None,
        sink: Any = None,
    ) -> None:
        """Submit every batch, call `on_result` / `on_failure` as each finishes.

        On KeyboardInterrupt the tasks still running are cancelled and the interrupt re-raised;
        results already handed to `on_result` are kept by the caller. `sink` (a
        `parts.PartSink`): tasks write their rows there and return the parts' entries.
        """
        ray = self._ray
        remote = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(run_batch)
        window = max(IN_FLIGHT_PER_CPU * self.info.cpus, 8)
        data = self._ship_data(scenarios)
        extra: tuple[Any, ...] = (
            () if data is None else (data,)
        )  # run_batch(scenarios, units[, data])
        kwargs = {} if sink is None else {"sink": sink}
        todo: Iterator[Sequence[Unit]] = iter(batches)
        pending: dict[Any, Sequence[Unit]] = {}

        def submit() -> None:
            while len(pending) < window:
                batch = next(todo, None)
                if batch is None:
                    return
                needed = {u.scenario_id: scenarios[u.scenario_id] for u in batch}
                pending[remote.remote(needed, list(batch), *extra, **kwargs)] = batch

        try:
            submit()
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                for ref in ready:
                    batch = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        on_failure(batch, _ray_error(exc))
                        rows = sum(len(u.architectures) for u in batch)
                    else:
                        on_result(result)
                        rows = result.row_count + len(result.errors)
                    if progress is not None:
                        progress.update(progress_task, advance=rows)
                    submit()
                if progress is not None:
                    progress.refresh()
        except KeyboardInterrupt:
            for ref in pending:
                with contextlib.suppress(Exception):  # best effort while interrupted
                    ray.cancel(ref, force=True)
            raise


# ---------------------------------------------------------------- batching (no Ray needed)


def task_count(total_cost: float, n_units: int, cpus: int) -> int:
    """How many tasks `batch_units` makes of `n_units` units costing `total_cost` in all
    (computed without building the units, so `distsim validate` answers at once for any size)."""
    if n_units <= 0:
        return 0
    n_tasks = max(
        math.ceil(total_cost / TARGET_TASK_REQUESTS),
        TASKS_PER_CPU * max(cpus, 1),
        math.ceil(n_units / MAX_TASK_UNITS),
    )
    return max(min(n_tasks, n_units), 1)


def batch_units(
    units: Sequence[Unit], cost: Callable[[Unit], float], cpus: int
) -> list[list[Unit]]:
    """Split units (in order) into contiguous batches of about equal cost.

    As many batches as needed for ~TARGET_TASK_REQUESTS each, but at least TASKS_PER_CPU per CPU,
    at most MAX_TASK_UNITS units each, and at most one per unit.
    """
    if not units:
        return []
    costs = [max(cost(u), 1.0) for u in units]
    total = sum(costs)
    n_tasks = task_count(total, len(units), cpus)
    per_task = total / n_tasks
    batches: list[list[Unit]] = [[] for _ in range(n_tasks)]
    before = 0.0
    for unit, c in zip(units, costs, strict=True):
        index = min(int((before + c / 2) / per_task), n_tasks - 1)
        batches[index].append(unit)
        before += c
    return [b for b in batches if b]


# ---------------------------------------------------------------- progress bar


class _RateColumn(ProgressColumn):
    """Rows finished per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.1f} runs/s", style="progress.data.speed")


@dataclass
class ProgressBar:
    """A rich progress bar on stderr counting (scenario, architecture, replication) rows."""

    total: int
    done: int = 0
    enabled: bool = True
    progress: Progress | None = field(default=None, init=False)
    task: Any = field(default=None, init=False)

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            self.progress = Progress(
                TextColumn("[bold]runs (architecture x replication)"),
                BarColumn(),
                MofNCompleteColumn(),
                _RateColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task("run", total=self.total, completed=self.done)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
