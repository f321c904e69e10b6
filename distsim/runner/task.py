"""What one Ray task computes: a batch of (scenario, replication) units, compact rows back.

A unit is one replication of one scenario: its workload is generated once from (seed,
replication) and every requested architecture is simulated on exactly those requests (common
random numbers). Pure functions, no Ray import: a test calls `run_batch` directly and gets the
same rows a worker would send.

What a task returns (`BatchResult`): one row per (scenario, architecture, replication) with the
keys `scenario_id, architecture, replication, seed` plus every metric of
`ReplicationResult.flat()` and the bounded payload of `distsim.runner.payload` (quantile sketches
and a TTFT time profile, as JSON text), and one error record per architecture that raised (the
rest of the batch still runs). No per-request arrays leave the worker.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from distsim.spec.study import Scenario

if TYPE_CHECKING:
    from distsim.runner.parts import PartSink
    from distsim.sim.replication import Replication
    from distsim.workload.generate import Requests

# The simulation modules (numba, the engines) are imported on first use, in the worker: the
# driver imports this module for `Unit` and to hand `run_batch` to Ray, and never simulates.


def simulate_requests(
    scenario: Scenario, arch: str, replication: int, requests: Requests
) -> Replication:
    """`distsim.sim.replication.simulate_requests`, imported on first call."""
    from distsim.sim.replication import simulate_requests as simulate

    return simulate(scenario, arch, replication, requests)


@dataclass(frozen=True)
class Unit:
    """One replication of one scenario, for the listed architectures (all, unless resuming)."""

    scenario_id: str
    replication: int
    architectures: tuple[str, ...]


@dataclass
class BatchResult:
    """Rows and failures of one task, and the CPU time spent simulating (for overhead figures)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    # Parts the task wrote itself (`parts.PartSink`): their commit entries; `rows` is then empty.
    parts: list[dict[str, Any]] = field(default_factory=list)
    compute_s: float = 0.0  # wall time inside the task
    cpu_s: float = 0.0  # CPU time of the task's thread (below compute_s when cores are shared)

    @property
    def row_count(self) -> int:
        """Rows the task produced, sent back or written to parts."""
        return len(self.rows) + sum(int(p["rows"]) for p in self.parts)


def _error(unit: Unit, scenario: Scenario, arch: str, exc: BaseException) -> dict[str, Any]:
    last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" ({last.filename.rsplit('/', 1)[-1]}:{last.lineno})" if last else ""
    return {
        "scenario_id": unit.scenario_id,
        "architecture": arch,
        "replication": unit.replication,
        "seed": scenario.seed,
        "error": f"{type(exc).__name__}: {exc}{where}",
    }


def run_unit(scenario: Scenario, unit: Unit) -> BatchResult:
    """Simulate every architecture of `unit` on one shared workload."""
    from distsim.runner.payload import payload
    from distsim.workload.generate import generate

    out = BatchResult()
    try:
        requests = generate(scenario.workload, scenario.duration_s, scenario.seed, unit.replication)
    except Exception as exc:  # reported per row; the rest of the study goes on
        out.errors.extend(_error(unit, scenario, a, exc) for a in unit.architectures)
        return out
    for arch in unit.architectures:
        try:
            rep = simulate_requests(scenario, arch, unit.replication, requests)
        except Exception as exc:
            out.errors.append(_error(unit, scenario, arch, exc))
            continue
        out.rows.append(
            {
                "scenario_id": unit.scenario_id,
                "architecture": arch,
                "replication": unit.replication,
                "seed": scenario.seed,
                **rep.result.flat(),
                **payload(rep, scenario.duration_s),
            }
        )
    return out


def load_kernels() -> float:
    """Import the simulation code and load the compiled kernels in this process; returns the
    seconds it took. Ray runs it once per worker when a session starts, so the first real task
    does not pay for it."""
    start = time.perf_counter()
    from distsim.sim import fast_exclusive

    kernels = getattr(fast_exclusive, "load_kernels", None)
    if kernels is not None:
        kernels()
    return time.perf_counter() - start


def run_batch(
    scenarios: Mapping[str, Scenario],
    units: Sequence[Unit],
    data: Any = None,
    sink: PartSink | None = None,
) -> BatchResult:
    """Run units one after another; the body of every Ray task.

    `data`: the parsed trace and empirical-size files the scenarios read
    (`workload.trace_files.snapshot`), shipped by the driver through Ray's object store, so a
    node needs no copy of them at the same path. `sink`: write the rows as part files there and
    return only their entries (`parts.sink_rows`; the rows come back when the folder is not
    visible from this node)."""
    from distsim.workload.trace_files import installed

    start = time.perf_counter()
    start_cpu = time.thread_time()
    out = BatchResult()
    with installed(data):
        for unit in units:
            one = run_unit(scenarios[unit.scenario_id], unit)
            out.rows.extend(one.rows)
            out.errors.extend(one.errors)
    if sink is not None:
        from distsim.runner.parts import sink_rows

        entries = sink_rows(sink, out.rows)
        if entries is not None:
            out.parts, out.rows = entries, []
    out.compute_s = time.perf_counter() - start
    out.cpu_s = time.thread_time() - start_cpu
    return out
