"""Study-runner figures: default-study wall time, 1 -> 2 worker speed-up, task overhead.

    python benchmarks/bench_runner.py                 # all three
    python benchmarks/bench_runner.py --replications 300 --duration-s 36000

1. `distsim run studies/default.yaml` as a user runs it (a subprocess, fresh output folder): the
   wall time, split into Ray start, simulation and aggregation as recorded in manifest.json
   (the rest is Python start-up, spec loading and writing files).
2. A study of a few hundred replications (the default study with 10-hour runs, so there is real
   work for the compiled engine) with `workers=1` and `workers=2`: the simulation phase of each
   (Ray start and worker warm-up excluded; every run starts its own local Ray) and the speed-up,
   with the share of a core the tasks actually got (other processes may share the cores).
3. Scheduling overhead of that study: 1 - (CPU-seconds inside tasks) / (simulation wall x CPUs),
   i.e. the share of the workers' time not spent simulating (task dispatch, result transfer,
   writing part files, worker start-up, the idle tail), and the same spread per task.

Prints figures only; no assertions. Numbers vary with machine load (printed at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = ROOT / "studies" / "default.yaml"


def end_to_end(out: Path) -> None:
    cmd = [sys.executable, "-m", "distsim", "run", str(DEFAULT_SPEC), "--out", str(out),
           "--fresh", "--quiet"]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stderr)
        raise SystemExit(f"distsim run failed with exit code {proc.returncode}")
    manifest = json.loads((out / "manifest.json").read_text())
    t = manifest["timings_s"]
    other = wall - t["ray_start"] - t["simulation"] - t["aggregation"]
    print("1. distsim run studies/default.yaml (subprocess, fresh)")
    print(f"   rows {manifest['rows_done']}, tasks {manifest['tasks']}, "
          f"{manifest['nodes']} node(s), {manifest['cpus']} CPUs")  # fmt: skip
    print(f"   wall time        {wall:7.2f} s")
    print(f"     Ray start      {t['ray_start']:7.2f} s  (incl. worker warm-up: imports, kernels)")
    print(f"     simulation     {t['simulation']:7.2f} s  "
          f"(CPU-seconds inside tasks: {t['task_compute']:.2f})")  # fmt: skip
    print(f"     aggregation    {t['aggregation']:7.2f} s")
    print(f"     other          {other:7.2f} s  (interpreter start, imports, spec, files)")


def scaling(replications: int, duration_s: float, work: Path) -> None:
    from distsim import run_study

    overrides = {"duration_s": duration_s}
    results = {}
    for workers in (1, 2):
        r = run_study(DEFAULT_SPEC, out_dir=work / f"w{workers}", workers=workers,
                      replications=replications, overrides=overrides, fresh=True,
                      progress=False)  # fmt: skip
        results[workers] = r
    r1, r2 = results[1], results[2]
    rows = len(r1.replications)
    requests = float(r1.replications["n_requests"].sum())
    print(f"2. speed-up: default study, {replications} replications x {duration_s:g} s "
          f"({rows} rows, ~{requests:,.0f} measured requests)")  # fmt: skip
    for w, r in results.items():
        t = r.timings_s
        print(f"   workers={w}: simulation {t['simulation']:6.2f} s  (Ray start "
              f"{t['ray_start']:.2f} s, {r.tasks} tasks, {r.cpus} CPUs)")  # fmt: skip
    speedup = r1.timings_s["simulation"] / r2.timings_s["simulation"]
    print(f"   speed-up 1 -> 2 workers: {speedup:.2f}x  (target >= 1.7x on 2 cores)")
    same = r1.replications.drop(columns=[]).equals(r2.replications)
    print(f"   identical results on 1 and 2 workers: {same}")
    for w, r in results.items():
        t = r.timings_s
        share = t["task_cpu"] / t["task_compute"] if t["task_compute"] else float("nan")
        print(f"   workers={w}: tasks got {share * 100:.0f}% of a core on average "
              f"(thread CPU {t['task_cpu']:.2f} s / wall inside tasks {t['task_compute']:.2f} s;"
              f" below ~95% = other processes share the cores)")  # fmt: skip
    cpu1, cpu2 = r1.timings_s["task_cpu"], r2.timings_s["task_cpu"]
    print(f"   work done (thread CPU-s in tasks): {cpu1:.2f} with 1 worker, {cpu2:.2f} with 2")
    share = {w: r.timings_s["task_cpu"] / r.timings_s["task_compute"] for w, r in results.items()}
    print(f"   at equal core share (speed-up x {share[1]:.2f} / {share[2]:.2f}): "
          f"{speedup * share[1] / share[2]:.2f}x  (what two uncontended cores would give, "
          "to first order)")  # fmt: skip
    print("3. task overhead (share of worker time not spent inside tasks)")
    for w, r in results.items():
        t = r.timings_s
        capacity = t["simulation"] * r.cpus
        overhead = 1.0 - t["task_compute"] / capacity
        per_task_ms = (capacity - t["task_compute"]) / r.tasks * 1e3
        print(f"   workers={w}: {overhead * 100:5.1f}%  ({t['task_compute']:.2f} s in "
              f"{r.tasks} tasks over {capacity:.2f} worker-s; {per_task_ms:.1f} ms per task, "
              f"mean task {t['task_compute'] / r.tasks * 1e3:.0f} ms; includes each worker's "
              f"first-task imports)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replications", type=int, default=300)
    parser.add_argument("--duration-s", type=float, default=36000.0)
    parser.add_argument("--skip-end-to-end", action="store_true")
    parser.add_argument("--skip-scaling", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="distsim-bench-") as tmp:
        work = Path(tmp)
        if not args.skip_end_to_end:
            end_to_end(work / "default")
        if not args.skip_scaling:
            scaling(args.replications, args.duration_s, work)
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f} (other processes compete for the same cores)")  # fmt: skip


if __name__ == "__main__":
    main()
