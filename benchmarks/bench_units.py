"""Many tiny units through `distsim run` (issue 14.6): dispatch throughput and the driver's memory.

    python benchmarks/bench_units.py                       # 10^4 then 10^5 units
    python benchmarks/bench_units.py --units 100000 --scenarios 100

A unit is one (scenario, replication): every architecture simulated on one workload. The study is
the default one made tiny (`--duration-s` 2 s runs at 2 req/s, no warm-up: ~4 requests a run), a
rate sweep of `--scenarios` values x units/scenarios replications, run as a user would
(`distsim run --workers 2 --quiet --force`, fresh interpreter). While it runs, the driver's RSS is
sampled from /proc every 0.25 s; printed: its peak (VmHWM), its RSS at each quarter of the run,
the simulation phase (manifest.json), units/s through Ray (dispatch, simulation, rows back, part
files) and the driver's time after the last task. Prints figures only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from distsim_testkit import study_dict  # noqa: E402
from machine import driver_command, load_1min  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def one(units: int, scenarios: int, duration_s: float, work: Path) -> None:
    reps = max(units // scenarios, 1)
    rates = [round(1.5 + i / max(scenarios - 1, 1), 6) for i in range(scenarios)]
    spec = study_dict(name=f"units{units}", duration_s=duration_s, warmup_s=0.0,
                      replications=reps, sweep={"workload.arrival.rate_rps": rates})  # fmt: skip
    spec_path = work / f"units{units}.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = work / f"out{units}"
    peak_file = work / f"peak{units}"
    args = ["run", str(spec_path), "--out", str(out), "--fresh", "--quiet", "--force",
            "--workers", "2"]  # fmt: skip
    load = load_1min()
    t0 = time.perf_counter()
    command = driver_command(args, peak_file)
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    samples: list[tuple[float, float]] = []

    def sample() -> None:
        while proc.poll() is None:
            rss = _rss_mib(proc.pid)
            if rss is not None:
                samples.append((time.perf_counter() - t0, rss))
            time.sleep(0.25)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    _, err = proc.communicate()
    thread.join()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(f"{units} units: distsim run failed ({proc.returncode}): {err.strip()[-400:]}")
        return
    manifest = json.loads((out / "manifest.json").read_text())
    t = manifest["timings_s"]
    peak = float(peak_file.read_text()) / 1024 if peak_file.exists() else float("nan")
    quarters = []
    for q in (0.25, 0.5, 0.75, 1.0):
        before = [rss for at, rss in samples if at <= q * wall]
        quarters.append(f"{before[-1]:.0f}" if before else "-")
    sim = t["simulation"]
    after = t["total"] - t["ray_start"] - sim
    print(f"{units:>7} units ({scenarios} scenarios x {reps} replications, {manifest['rows_done']} "
          f"rows, {manifest['tasks']} tasks): wall {wall:.1f} s; simulation phase {sim:.1f} s = "
          f"{units / sim:,.0f} units/s (task CPU {t['task_cpu']:.0f} s: "
          f"{units / max(t['task_cpu'], 1e-9):,.0f} units per CPU-second); driver after the "
          f"last task {after:.1f} s (aggregation "
          f"{t['aggregation']:.1f} s); driver peak {peak:.0f} MiB, RSS at 1/4, 1/2, 3/4, end: "
          f"{', '.join(quarters)} MiB; load {load:.1f}", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", default="10000,100000")
    parser.add_argument("--scenarios", type=int, default=100)
    parser.add_argument("--duration-s", type=float, default=2.0)
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}; load {load_1min():.1f}")
    with tempfile.TemporaryDirectory(prefix="distsim-units-") as tmp:
        for n in (int(x) for x in args.units.split(",")):
            one(n, args.scenarios, args.duration_s, Path(tmp))


if __name__ == "__main__":
    main()
