"""Study-runner figures (issue 7, targets 3 and 4): end-to-end time, 1 -> 2 worker speed-up, task
overhead, driver memory.

    python benchmarks/bench_runner.py                      # everything, ~5 min
    python benchmarks/bench_runner.py --only end-to-end --runs 5 --quiet-load 1.5
    python benchmarks/bench_runner.py --only speedup --abba --replications 300 --duration-s 144000
    python benchmarks/bench_runner.py --only memory --many-rows

1. End to end: `distsim run studies/default.yaml --fresh --quiet` as a user runs it (a fresh
   interpreter per run), `--runs` times. Each run's wall time is split as manifest.json records
   it (Ray start including worker warm-up, simulation, aggregation with report.md and plots) and
   "other" (interpreter start, imports, spec, files, the terminal report, joining Ray's
   shutdown). Next to it: the CPU time of the run's whole process tree (driver, Ray's processes,
   workers) and the CPU time *other* processes used meanwhile (the machine is shared), and a
   first-order uncontended estimate (`benchmarks/machine.py`). Target: < 15 s on 2 cores.
2. Speed-up: a study of about a minute on one worker (the default study with `--duration-s`
   runs, `--replications` of them) with workers=1 then workers=2, each with its own local Ray.
   The simulation phase of each (Ray start and warm-up excluded), the wall speed-up, the share
   of a core the tasks got (thread CPU / wall inside tasks; below ~95% = others shared the
   cores) and the speed-up at equal core share and at equal CPU speed (the same work's thread
   CPU time on either side; a shared VM's cores also change speed). `--abba` runs 1, 2, 2, 1
   workers and sums each side, so drift over time cancels. Target: >= 1.8x.
3. Task overhead of those runs: 1 - (wall inside tasks) / (simulation wall x CPUs), the share of
   the workers' time not spent in tasks (dispatch, result transfer, idle tail). Target: < 5%.
4. Driver memory: the peak RSS of the driver process alone (VmHWM in it) for a study of ~10
   million simulated requests (the default study, 70 replications of 10 h), next to the default
   study's; with `--many-rows`, also 10 million requests as 16,800 short replications (rows are
   what the driver holds: a few kB of sketches each; nothing per request). Target: < 500 MB.

Prints figures only; no assertions. `--quiet-load L` waits (up to `--quiet-wait` s) before each
measurement until the 1-minute load average is at most L.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import Run, load_1min, measured_run, reference_loop_ms, wait_for_quiet  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = ROOT / "studies" / "default.yaml"
CORES = os.cpu_count() or 1


def _quiet(args: argparse.Namespace) -> None:
    if args.quiet_load is not None:
        wait_for_quiet(args.quiet_load, args.quiet_wait)


def _run_cli(extra: list[str], out: Path, args: argparse.Namespace) -> tuple[Run, dict[str, Any]]:
    _quiet(args)
    run = measured_run(["run", str(DEFAULT_SPEC), "--out", str(out), "--fresh", "--quiet", *extra],
                       ROOT)  # fmt: skip
    if run.returncode != 0:
        print(run.stderr)
        raise SystemExit(f"distsim run failed with exit code {run.returncode}")
    return run, json.loads((out / "manifest.json").read_text())


def end_to_end(args: argparse.Namespace, work: Path) -> list[Run]:
    print(f"1. distsim run studies/default.yaml (fresh interpreter and folder), {args.runs} runs")
    print("   wall = Ray start + simulation + aggregation + other; CPU: this run's processes "
          "/ other processes, same window")  # fmt: skip
    print("    run   wall   Ray start  simul.  aggreg.  other |  own CPU  others' CPU  load "
          "| uncontended est.")  # fmt: skip
    runs: list[Run] = []
    manifest: dict[str, Any] = {}
    for i in range(args.runs):
        run, manifest = _run_cli([], work / "default", args)
        t = manifest["timings_s"]
        other = run.wall_s - t["total"]
        split = f"{t['ray_start']:7.2f} s {t['simulation']:5.2f} s {t['aggregation']:6.2f} s"
        cpu = f"{run.own_cpu_s:6.2f} s {run.other_cpu_s:8.2f} s  {run.load_before:4.1f}"
        print(f"   {i + 1:4d} {run.wall_s:6.2f} s {split} {other:5.2f} s | {cpu} | "
              f"{run.adjusted_wall_s(CORES):6.2f} s")  # fmt: skip
        runs.append(run)
    walls = [r.wall_s for r in runs]
    adjusted = [r.adjusted_wall_s(CORES) for r in runs]
    own = [r.own_cpu_s for r in runs]
    print(f"   rows {manifest['rows_done']}, tasks {manifest['tasks']}, {manifest['cpus']} "
          f"worker CPU(s) (chosen by the runner for this study size)")  # fmt: skip
    print(f"   wall: min {min(walls):.2f} s, median {statistics.median(walls):.2f} s "
          f"(target < 15 s on 2 cores)")  # fmt: skip
    print(f"   own CPU time: median {statistics.median(own):.2f} CPU-s; uncontended estimate: "
          f"median {statistics.median(adjusted):.2f} s")  # fmt: skip
    peaks = [r.driver_peak_mib for r in runs if r.driver_peak_mib is not None]
    if peaks:
        print(f"   driver peak RSS {max(peaks):.0f} MiB")
    return runs


def speedup(args: argparse.Namespace, work: Path) -> None:
    from distsim import run_study

    overrides = {"duration_s": args.duration_s}
    order = [1, 2, 2, 1] if args.abba else [1, 2]  # ABBA: drift in machine speed cancels
    runs: dict[int, list[Any]] = {1: [], 2: []}
    print(f"2. speed-up: default study, {args.replications} replications x {args.duration_s:g} s, "
          f"runs in the order workers={order}")  # fmt: skip
    for i, workers in enumerate(order):
        _quiet(args)
        r = run_study(DEFAULT_SPEC, out_dir=work / f"w{workers}-{i}", workers=workers,
                      replications=args.replications, overrides=overrides, fresh=True,
                      progress=False)  # fmt: skip
        runs[workers].append(r)
        t = r.timings_s
        share = t["task_cpu"] / t["task_compute"] if t["task_compute"] else float("nan")
        print(f"   workers={workers}: simulation {t['simulation']:6.2f} s ({r.tasks} tasks; Ray "
              f"start {t['ray_start']:.2f} s not included); tasks got {share * 100:.0f}% of a "
              f"core (thread CPU {t['task_cpu']:.2f} s / wall in tasks "
              f"{t['task_compute']:.2f} s)")  # fmt: skip
    first = runs[1][0]
    requests = float(first.replications["n_requests"].sum())
    same = all(r.replications.equals(first.replications) for w in runs for r in runs[w])
    print(f"   {len(first.replications)} rows, ~{requests:,.0f} measured requests per run; "
          f"identical rows in every run: {same}")  # fmt: skip

    def total(w: int, key: str) -> float:
        return sum(r.timings_s[key] for r in runs[w])

    speed = total(1, "simulation") / total(2, "simulation")
    share = {w: total(w, "task_cpu") / total(w, "task_compute") for w in runs}
    cpu = {w: total(w, "task_cpu") for w in runs}
    print(f"   speed-up 1 -> 2 workers, wall: {speed:.2f}x (target >= 1.8x)")
    print(f"   at equal core share (x {share[1]:.2f} / {share[2]:.2f}): "
          f"{speed * share[1] / share[2]:.2f}x")  # fmt: skip
    print(f"   and at equal CPU speed (thread CPU-s for the same work: {cpu[1]:.2f} on 1 worker, "
          f"{cpu[2]:.2f} on 2; x {cpu[2]:.2f} / {cpu[1]:.2f}): "
          f"{speed * share[1] / share[2] * cpu[2] / cpu[1]:.2f}x  (first-order estimate for two "
          "uncontended cores of equal speed)")  # fmt: skip
    print("3. task overhead: share of worker time not inside tasks (target < 5%)")
    for w in runs:
        for r in runs[w]:
            t = r.timings_s
            capacity = t["simulation"] * r.cpus
            overhead = 1.0 - t["task_compute"] / capacity
            idle_ms = (capacity - t["task_compute"]) / r.tasks * 1e3
            print(f"   workers={w}: {overhead * 100:5.1f}%  ({t['task_compute']:.2f} s in "
                  f"{r.tasks} tasks over {capacity:.2f} worker-s; {idle_ms:.1f} ms per task of "
                  f"{t['task_compute'] / r.tasks * 1e3:.0f} ms)")  # fmt: skip


def driver_memory(args: argparse.Namespace, work: Path, baseline: list[Run]) -> None:
    print("4. driver peak memory (RSS of the driver process alone; target < 500 MB)")
    if not baseline:
        run, _ = _run_cli([], work / "default", args)
        baseline = [run]
    base = max(r.driver_peak_mib or 0.0 for r in baseline)
    print(f"   default study (36,000 requests, 60 rows):          {base:6.0f} MiB")
    cases = [("70 replications x 10 h", 70, 36000.0)]
    if args.many_rows:
        cases.append(("8,400 replications x 300 s", 8400, 300.0))
    for label, replications, duration_s in cases:
        extra = ["--workers", "2", "--replications", str(replications),
                 "--set", f"duration_s={duration_s:g}"]  # fmt: skip
        run, manifest = _run_cli(extra, work / "memory", args)
        rows = manifest["rows_done"]
        requests = rows * 2.0 * duration_s  # a row: one architecture, 2 req/s for duration_s
        print(f"   {label} ({requests / 1e6:.1f} M simulated requests, {rows} rows): "
              f"{run.driver_peak_mib:6.0f} MiB  (wall {run.wall_s:.1f} s)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["end-to-end", "speedup", "memory"], action="append")
    parser.add_argument("--runs", type=int, default=5, help="end-to-end runs")
    parser.add_argument("--replications", type=int, default=300)
    parser.add_argument("--duration-s", type=float, default=144000.0)
    parser.add_argument("--abba", action="store_true", help="speed-up: runs 1, 2, 2, 1 workers")
    parser.add_argument("--many-rows", action="store_true", help="memory: also 16,800 rows")
    parser.add_argument("--quiet-load", type=float, default=None)
    parser.add_argument("--quiet-wait", type=float, default=600.0)
    args = parser.parse_args()
    parts = args.only or ["end-to-end", "speedup", "memory"]
    print(f"machine: {CORES} CPUs, load average {load_1min():.2f} at start; reference loop "
          f"{reference_loop_ms():.0f} ms CPU (lower = faster cores)")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="distsim-bench-") as tmp:
        work = Path(tmp)
        runs = end_to_end(args, work) if "end-to-end" in parts else []
        if "speedup" in parts:
            speedup(args, work)
        if "memory" in parts:
            driver_memory(args, work, runs)
    load = os.getloadavg()
    print(f"machine: load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end; "
          f"reference loop {reference_loop_ms():.0f} ms CPU")  # fmt: skip


if __name__ == "__main__":
    main()
