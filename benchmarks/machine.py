"""Measuring a run on a machine other jobs share: CPU time of the run vs everyone else's.

Used by the runner benchmarks. Linux only (reads /proc).

- `measured_run(args)`: runs `distsim <args>` to completion and returns its wall time, the CPU
  time of its process tree (the driver, and Ray's processes and workers it started: sampled from
  /proc every 0.1 s, since Ray's workers are not all reaped by the driver), the driver's own
  peak memory (VmHWM, read in the driver as it exits), and the CPU time the whole machine spent
  meanwhile, so the CPU *others* used in the same window is known.
- `wait_for_quiet(...)`: waits (bounded) for the 1-minute load average to drop, so the final
  measurements are taken when the machine is least busy.

Share-adjusted figures, first order: if others used `other_cpu_s` CPU-seconds on `cores` cores
during a run of wall time W, they held the cores for about other_cpu_s / cores of it, so an
uncontended run would take about W - other_cpu_s / cores, but never less than what the run's
own CPU time needs on every core (own_cpu_s / cores). Both raw and adjusted figures are printed;
the adjusted one is an estimate, not a measurement.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
# Runs the distsim CLI in this interpreter and writes the driver's own peak RSS (KiB) on exit:
# VmHWM of its address space. (getrusage's ru_maxrss would not do: Linux carries a parent's peak
# into a child across fork and exec, so a child of a big benchmark process reports the parent's.)
_DRIVER = """
import atexit, sys
out = sys.argv.pop(1)
def _peak():
    with open("/proc/self/status") as status, open(out, "w") as f:
        f.write(status.read().split("VmHWM:")[1].split()[0])
atexit.register(_peak)
from distsim.cli import main
sys.argv[0] = "distsim"
main()
"""


def machine_busy_s() -> float:
    """CPU-seconds all cores have spent not idle since boot (/proc/stat)."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    steal = fields[7] if len(fields) > 7 else 0
    return (sum(fields[:8]) - idle - steal) * _TICK_S


def _processes() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU-seconds used so far) of every process."""
    out: dict[int, tuple[int, float]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        out[int(name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) * _TICK_S)
    return out


class TreeCpu:
    """CPU-seconds used by a process and every process it started (directly or not), sampled
    from /proc until `stop`: a process once seen in the tree is counted until it exits, even
    if it is re-parented."""

    def __init__(self, root: int, interval_s: float = 0.1) -> None:
        self._members = {root}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        procs = _processes()
        grew = True
        while grew:
            grew = False
            for pid, (parent, _) in procs.items():
                if parent in self._members and pid not in self._members:
                    self._members.add(pid)
                    grew = True
        for pid in self._members:
            if pid in procs:
                self._last[pid] = procs[pid][1]

    def _run(self, interval_s: float) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(interval_s)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return sum(self._last.values())


def reference_loop_ms() -> float:
    """CPU milliseconds of a fixed pure-Python loop: how fast this machine's cores run just now
    (a shared VM's cores change speed with what its neighbours do; lower is faster)."""
    start = time.process_time()
    total = 0
    for i in range(3_000_000):
        total += i
    return (time.process_time() - start) * 1e3


def load_1min() -> float:
    return os.getloadavg()[0]


def wait_for_quiet(max_load: float, timeout_s: float) -> float:
    """Wait until the 1-minute load average is at most `max_load` (or `timeout_s` passed);
    returns the load average when it stopped waiting."""
    deadline = time.monotonic() + timeout_s
    while load_1min() > max_load and time.monotonic() < deadline:
        time.sleep(5.0)
    return load_1min()


@dataclass
class Run:
    """One measured run of a command."""

    wall_s: float
    own_cpu_s: float  # the command's process tree (as reaped), user + system
    machine_cpu_s: float  # every process on the machine in the same window
    driver_peak_mib: float | None
    returncode: int
    stderr: str
    load_before: float

    @property
    def other_cpu_s(self) -> float:
        """CPU-seconds other processes used during the run (never negative)."""
        return max(self.machine_cpu_s - self.own_cpu_s, 0.0)

    def adjusted_wall_s(self, cores: int) -> float:
        """First-order uncontended wall time (see the module docstring)."""
        return max(self.wall_s - self.other_cpu_s / cores, self.own_cpu_s / cores)


def driver_command(args: list[str], peak_file: Path) -> list[str]:
    """`distsim <args>` in a fresh interpreter that records the driver's peak RSS."""
    return [sys.executable, "-c", _DRIVER, str(peak_file), *args]


def measured_run(args: list[str], cwd: Path) -> Run:
    """Run `distsim <args>` and measure it (see `Run`)."""
    with tempfile.TemporaryDirectory(prefix="distsim-peak-") as tmp:
        peak_file = Path(tmp) / "peak"
        load = load_1min()
        busy0 = machine_busy_s()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            driver_command(args, peak_file),
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        tree = TreeCpu(proc.pid)
        assert proc.stderr is not None
        stderr = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        busy = machine_busy_s() - busy0
        sampled = tree.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
        peak = float(peak_file.read_text()) / 1024 if peak_file.exists() else None
    return Run(
        wall_s=wall,
        own_cpu_s=max(usage.ru_utime + usage.ru_stime, sampled),
        machine_cpu_s=busy,
        driver_peak_mib=peak,
        returncode=proc.returncode,
        stderr=stderr,
        load_before=load,
    )
