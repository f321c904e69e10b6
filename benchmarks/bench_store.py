"""Peak memory of the store's write path: parts as tasks finish, then consolidation.

    python benchmarks/bench_store.py                              # 24,000 rows of ~65 KiB
    python benchmarks/bench_store.py --rows 24000 --code /path/to/older/checkout
    python benchmarks/bench_store.py --open      # also: opening the folder alone (verification)

Rows as a long study stores them: a 2-architecture sweep, rows of ~`--row-kib` KiB (real rows of
one simulated scenario, their `ttft_profile` text padded to the size the issue measured on long
runs, ~65 KiB with sketches), stored 40 rows per part as tasks return them. Two child processes,
so each peak is its own: one writes the parts (`ResultStore.append`), one opens the folder and
consolidates it (`ResultStore.consolidate`: what every run does at its end). Each prints its
peak resident set (VmHWM of its own address space: getrusage's ru_maxrss would carry over a
parent's peak) and wall time; the parent prints both. `--open` also times opening the folder
alone (`ResultStore.open`: recovery after a crash, what every run does first).

`--code DIR` runs the children on another checkout of distsim (e.g. `git archive` of an older
commit), for a before/after comparison of the same rows on the same machine. Prints figures only.
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
RATE = "workload.arrival.rate_rps"
PER_PART = 40


def study(scenarios: int, replications: int) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from distsim_testkit import study_dict

    rates = [round(1.0 + 3.0 * i / max(scenarios - 1, 1), 6) for i in range(scenarios)]
    return study_dict(name="bench", duration_s=20.0, warmup_s=2.0, replications=replications,
                      sweep={RATE: rates})  # fmt: skip


def child_write(folder: Path, rows: int, row_kib: float) -> dict:
    import pandas as pd

    from distsim.runner.plan import plan_study
    from distsim.runner.store import ResultStore
    from distsim.runner.task import Unit, run_batch
    from distsim.spec.study import validate_study

    scenarios = 100
    reps = max(rows // (2 * scenarios), 1)
    plan = plan_study(validate_study(study(scenarios, reps)))
    first = plan.scenarios[0]
    template = pd.DataFrame(
        run_batch({first.id: first.scenario}, [Unit(first.id, 0, plan.architectures)]).rows
    )
    pad = max(int(row_kib * 1024) - int(template.memory_usage(deep=True).sum() / len(template)), 0)
    t0 = time.perf_counter()
    batch: list[dict] = []
    with ResultStore.open(folder, fresh=True) as store:
        store.write_spec(plan.study.model_dump(mode="json"))
        for ps in plan.scenarios:
            for r in range(reps):
                for row in template.to_dict("records"):
                    # Incompressible padding, new for every row (Parquet would store a
                    # repeated text once).
                    profile = row["ttft_profile"] + os.urandom(pad // 2).hex()
                    batch.append({**row, "scenario_id": ps.id, "replication": r,
                                  "ttft_profile": profile})  # fmt: skip
                if len(batch) >= PER_PART:
                    store.append(batch)
                    batch = []
        store.append(batch)
    return {"rows": plan.rows, "write_s": time.perf_counter() - t0}


def child_open(folder: Path) -> dict:
    from distsim.runner.store import ResultStore

    t0 = time.perf_counter()
    with ResultStore.open(folder):  # recovery after a crash (what every run does first)
        pass
    return {"open_s": time.perf_counter() - t0}


def child_consolidate(folder: Path) -> dict:
    from distsim.runner.store import ResultStore
    from distsim.runner.study import _stored_plan

    plan = _stored_plan(folder)
    t0 = time.perf_counter()
    with ResultStore.open(folder) as store:
        store.consolidate(plan)
    return {"consolidate_s": time.perf_counter() - t0}


def run_child(args: list[str], code: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True,
                         text=True, check=False, cwd=code)  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=24_000)
    ap.add_argument("--row-kib", type=float, default=65.0)
    ap.add_argument("--code", type=Path, default=ROOT, help="checkout of distsim to measure")
    ap.add_argument("--folder", type=Path, default=None)
    ap.add_argument("--child", choices=["write", "open", "consolidate"], default=None)
    ap.add_argument("--open", action="store_true", help="also time opening the folder alone")
    a = ap.parse_args()
    if a.child:
        child = {"write": lambda: child_write(a.folder, a.rows, a.row_kib),
                 "open": lambda: child_open(a.folder),
                 "consolidate": lambda: child_consolidate(a.folder)}[a.child]  # fmt: skip
        result = child()
        with open("/proc/self/status", encoding="ascii") as status:
            hwm_kib = float(status.read().split("VmHWM:")[1].split()[0])
        result["peak_mib"] = hwm_kib / 1024
        result["cpu_s"] = time.process_time()
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory(dir=a.folder) as tmp:
        folder = Path(tmp) / "out"
        common = ["--folder", str(folder), "--rows", str(a.rows), "--row-kib", str(a.row_kib)]
        w = run_child(["--child", "write", *common], a.code.resolve())
        size = sum(p.stat().st_size for p in folder.rglob("*.parquet")) / 2**20
        o = run_child(["--child", "open", *common], a.code.resolve()) if a.open else None
        c = run_child(["--child", "consolidate", *common], a.code.resolve())
        print(f"code: {a.code.resolve()}")
        print(f"rows: {w['rows']:,} of ~{a.row_kib:g} KiB, {PER_PART} per part; "
              f"{size:,.0f} MiB of parts on disk")  # fmt: skip
        print(f"write parts: peak {w['peak_mib']:,.0f} MiB, {w['write_s']:.1f} s")
        if o is not None:
            print(f"open: peak {o['peak_mib']:,.0f} MiB, {o['open_s']:.2f} s wall, process "
                  f"{o['cpu_s']:.2f} CPU-s (imports included)")  # fmt: skip
        print(f"consolidate: peak {c['peak_mib']:,.0f} MiB, {c['consolidate_s']:.1f} s")


if __name__ == "__main__":
    main()
