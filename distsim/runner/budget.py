"""What a study will cost before it runs: simulated requests, time, memory; refuse the impossible.

`distsim validate` prints the estimate; `distsim validate` and `distsim run` refuse a study far
beyond the machine (one-line error, exit code 2) unless `--force`. "Far beyond" means either

- the memory it needs is more than this machine has available: the simulations in flight (the
  largest replication's requests x the bytes one simulated request takes x the CPUs running
  at once) plus the driver's copy of every result row while it writes `replications.parquet`, or
- even at the engine's best measured speed it would take more than `MAX_WALL_S` on the CPUs
  it runs on.

The speeds are optimistic (measured on an idle core, `benchmarks/bench_engine.py`) and the byte
counts measured with tracemalloc on large replications, so a refused study is certainly too big,
never a borderline one. Pure functions of the plan plus `available_memory_bytes()`.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass

from distsim.errors import DistsimError
from distsim.runner.plan import Plan, expected_requests_per_unit

# Simulated requests per CPU-second at best (exclusive: compiled recursions; batched: the
# step-by-step engine): above what benchmarks/bench_engine.py and bench_batched.py measure.
REQUESTS_PER_CPU_S = {"exclusive": 2.0e6, "batched": 2.0e4}
# Peak bytes per simulated request inside a task (workload arrays, per-request times, metric
# arrays), counted as in `expected_requests_per_unit` (every architecture): above what
# tracemalloc shows on large replications.
BYTES_PER_REQUEST = {"exclusive": 100, "batched": 250}
# Bytes per result row in the driver (metrics plus the bounded sketch/profile payload as
# pandas holds it, with room to spare), times the copies alive while consolidating.
BYTES_PER_ROW = 64 * 1024
DRIVER_COPIES = 3
# A study that would run longer than this even at the best speed is refused (without --force).
MAX_WALL_S = 24 * 3600.0
# What a run costs besides simulating, end to end (benchmarks/README.md, the shared VM: 9.95 s +
# 0.111 s per M requests): a local Ray start-up of ~6 s, imports, and per scenario the driver's
# aggregation and report after the last task (bench_driver.py: 55 CPU-ms per scenario fitted over
# 10-10,000 scenarios; it was 0.65 s when every scenario drew its own plot).
FIXED_S = 10.0
PER_SCENARIO_S = 0.055


class TooLargeError(DistsimError):
    """The study is far beyond the machine; the message carries the estimate."""


@dataclass(frozen=True)
class Estimate:
    """The cost of a study on `cpus` CPUs (figures are expectations, not bounds). `cpus` None:
    a cluster of unknown size (joined with --address): no time limit, one task per machine."""

    requests: float  # simulated requests, every scenario x architecture x replication
    rows: int
    cpus: int | None
    cpu_s: float  # at the best measured speed
    task_bytes: float  # the largest replication's simulation
    worker_bytes: float  # every CPU running the largest replication at once
    driver_bytes: float  # result rows in the driver
    available_bytes: float | None
    scenarios: int = 1
    precision_waves: bool = False  # a `precision` study: waves follow, their number unknown
    # With `precision`: CPU seconds of the waves if every scenario ran to max_replications (the
    # most they can cost; how many run depends on the intervals the first replications give).
    precision_cap_cpu_s: float = 0.0

    @property
    def wall_s(self) -> float:
        return self.cpu_s / max(self.cpus or 1, 1)

    @property
    def total_s(self) -> float:
        """End to end: Ray start-up, simulation on the CPUs, aggregation and report."""
        return FIXED_S + PER_SCENARIO_S * self.scenarios + self.wall_s

    @property
    def memory_bytes(self) -> float:
        """Peak on the machine that runs the driver and its local workers."""
        return self.worker_bytes + self.driver_bytes

    def problems(self) -> list[str]:
        """Why the study is beyond the machine (empty when it is not)."""
        out: list[str] = []
        if self.cpus is not None and (not math.isfinite(self.requests) or self.wall_s > MAX_WALL_S):
            out.append(f"more than {format_duration(MAX_WALL_S)} on {self.cpus} CPUs")
        avail = self.available_bytes
        if avail is not None and (
            not math.isfinite(self.memory_bytes) or self.memory_bytes > avail
        ):
            out.append(f"more memory than the {format_bytes(avail)} available")
        return out

    def line(self) -> str:
        """One line: requests, time, memory."""
        avail = (
            f" of {format_bytes(self.available_bytes)} available"
            if self.available_bytes is not None
            else ""
        )
        where = "the cluster" if self.cpus is None else f"{self.cpus} CPUs"
        when = (
            format_duration(self.cpu_s) + " CPU time"
            if self.cpus is None
            else (
                f"~{format_duration(self.total_s)} end to end (Ray start-up, imports and "
                f"aggregation ~{format_duration(self.total_s - self.wall_s)}, simulation "
                f"{format_duration(self.wall_s)})"
            )
        )
        if self.precision_waves:
            cap = (
                format_duration(self.precision_cap_cpu_s) + " CPU time"
                if self.cpus is None
                else format_duration(self.precision_cap_cpu_s / self.cpus)
            )
            cap = cap if cap.startswith("<") else "~" + cap
            when += f" plus the precision waves (at most {cap}: every scenario at its cap)"
        return (
            f"~{format_count(self.requests)} simulated requests, at least "
            f"{when} on {where}, peak memory "
            f"~{format_bytes(self.memory_bytes)}{avail} (simulations "
            f"{format_bytes(self.worker_bytes)}, result rows {format_bytes(self.driver_bytes)})"
        )


def available_memory_bytes() -> float | None:
    """Memory available to new processes on this machine (Linux MemAvailable, else total)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return None


def planned_cpus(address: str | None, workers: int | None) -> int | None:
    """The CPUs a run will use, known before Ray starts: the Ray session already running in this
    process, else `workers` (default: all cores) for a local run; None when joining a cluster."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return max(int(ray.cluster_resources().get("CPU", 1)), 1)
    if address or os.environ.get("RAY_ADDRESS"):
        return None
    return workers or os.cpu_count() or 1


def estimate(plan: Plan, cpus: int | None, available_bytes: float | None = None) -> Estimate:
    """The cost of running every row of `plan` on `cpus` CPUs (None: a cluster)."""
    cpus = None if cpus is None else max(int(cpus), 1)
    requests = 0.0
    cpu_s = 0.0
    task_bytes = 0.0
    precision = getattr(plan.study, "precision", None)
    extra = 0 if precision is None else max(precision.max_replications - plan.replications, 0)
    cap_cpu_s = 0.0
    for ps in plan.scenarios:
        engine = ps.scenario.engine
        per_unit = expected_requests_per_unit(ps.scenario)
        requests += per_unit * plan.replications
        cpu_s += per_unit * plan.replications / REQUESTS_PER_CPU_S[engine]
        cap_cpu_s += per_unit * extra / REQUESTS_PER_CPU_S[engine]
        task_bytes = max(task_bytes, per_unit * BYTES_PER_REQUEST[engine])
    concurrent = min(cpus or 1, max(plan.units, 1))
    return Estimate(
        requests=requests,
        rows=plan.rows,
        cpus=cpus,
        cpu_s=cpu_s,
        task_bytes=task_bytes,
        worker_bytes=task_bytes * concurrent,
        driver_bytes=float(plan.rows) * BYTES_PER_ROW * DRIVER_COPIES,
        available_bytes=available_bytes,
        scenarios=len(plan.scenarios),
        precision_waves=precision is not None,
        precision_cap_cpu_s=cap_cpu_s,
    )


def run_cpus(plan: Plan, address: str | None, workers: int | None) -> int | None:
    """The CPUs `distsim run` will use, as it chooses them: a joined cluster (None), the Ray
    session of this process, `workers`, or for a local start one per core or fewer when the
    expected simulation cannot keep them busy (`execute.local_cpus`)."""
    cpus = planned_cpus(address, workers)
    if cpus is None or workers or address or _ray_running():
        return cpus
    from distsim.runner.execute import local_cpus

    expected = (
        estimate(plan, cpus).cpu_s if getattr(plan.study, "precision", None) is None else None
    )
    return local_cpus(None, expected)


def _ray_running() -> bool:
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def check(plan: Plan, cpus: int | None, *, force: bool = False) -> Estimate:
    """The estimate on this machine; `TooLargeError` (one line, with the estimate) when the
    study is far beyond it, unless `force`."""
    est = estimate(plan, cpus, available_memory_bytes())
    problems = est.problems()
    if problems and not force:
        raise TooLargeError(
            f"study too large: {' and '.join(problems)}: {est.line()}; reduce replications, "
            "sweep values or duration_s, run on a cluster (--address), or pass --force"
        )
    return est


def format_count(x: float) -> str:
    if not math.isfinite(x):
        return "inf"
    if x < 1e6:
        return f"{x:,.0f}"
    return f"{x:.2g}".replace("e+0", "e").replace("e+", "e")


def format_bytes(x: float | None) -> str:
    if x is None:
        return "?"
    if not math.isfinite(x):
        return "inf B"
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if x < 1000 or unit == "PB":
            return f"{x:.3g} {unit}"
        x /= 1000
    return f"{x:.3g} PB"  # pragma: no cover


def format_duration(s: float) -> str:
    if not math.isfinite(s):
        return "forever"
    if s < 90:
        return f"{s:.0f} s" if s >= 1 else "< 1 s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    if s < 365 * 86400:
        return f"{s / 86400:.0f} days"
    return f"{s / (365 * 86400):.2g} years"
