"""Driver time after the last task against the number of scenarios (issue 18), with a fitted line.

    python benchmarks/bench_driver.py                         # 10, 100, 1,000, 10,000 scenarios
    python benchmarks/bench_driver.py --scenarios 10,100,1000   # a quicker run
    python benchmarks/bench_driver.py --scenarios 100,500,1000 --ray 2   # fanned out over Ray
    python benchmarks/bench_driver.py --memory-rows 10000,24000,100000   # driver peak vs rows
    python benchmarks/bench_driver.py --memory-rows 10000 --code /path/to/older/checkout

What `distsim run` does in the driver once the last row has arrived, timed phase by phase (wall
and the driver's CPU) on rows that are already stored (no Ray): consolidate the part files and
export replications.parquet, count the rows used (for the manifest), aggregate (summary and
comparisons), write summary.csv / comparisons.csv / report.md with its plots / summary.json, and
render the terminal report.

The study: a sweep of `workload.arrival.rate_rps` over N values (2 architectures x 2
replications, so 4N rows). The rows are real: one scenario's rows are simulated once
(`run_batch`, 20 s replications) and copied to every scenario id, so the time measured is the
driver's, not the simulation's. Fits driver seconds = a + b x scenarios (scipy.stats.linregress)
and prints b in ms per scenario; the target is b <= 20 ms on 2 cores. `--ray N` aggregates
through a local Ray session of N CPUs (`streaming.aggregate_store` as `distsim run` does for
studies of `FAN_OUT_SCENARIOS` or more, Ray's start not counted).

`--memory-rows`: the driver's peak RSS (VmHWM of a fresh process) aggregating a finished
folder of N rows and writing its report (`load_result` + `write_report_files` + the terminal
report: what the run does after consolidating). Rows of 300 s runs (real sketches and
profiles, made unique per row), 2 architectures x 10 replications per scenario, written as a run
writes them (parts, then consolidation). `--code DIR` measures the code at DIR (PYTHONPATH) on
the same folder. Prints figures only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from distsim_testkit import study_dict  # noqa: E402
from machine import reference_loop_ms  # noqa: E402

RATE = "workload.arrival.rate_rps"
# What `distsim run` does after the last task, in its order (`runner.study._run`).
PHASES = ("consolidate", "count_used", "aggregate", "report_files", "terminal")


def study(n: int) -> dict:
    rates = [round(1.0 + 3.0 * i / max(n - 1, 1), 6) for i in range(n)]
    return study_dict(name=f"sweep{n}", duration_s=20.0, warmup_s=2.0, replications=2,
                      sweep={RATE: rates})  # fmt: skip


def one_size(n: int, folder: Path, session=None) -> dict[str, float]:
    from distsim.runner.plan import plan_study
    from distsim.runner.store import SUMMARY_FILE, ResultStore
    from distsim.runner.study import load_result, write_report_files
    from distsim.runner.task import Unit, run_batch
    from distsim.spec.study import validate_study

    plan = plan_study(validate_study(study(n)))
    first = plan.scenarios[0]
    units = [Unit(first.id, r, plan.architectures) for r in range(plan.replications)]
    template = pd.DataFrame(run_batch({first.id: first.scenario}, units).rows)
    out = folder / f"n{n}"
    times: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def timed(name: str, fn, *args):  # wall and CPU time of one phase
        t0, c0 = time.perf_counter(), time.process_time()
        value = fn(*args)
        times[name], cpu[name] = time.perf_counter() - t0, time.process_time() - c0
        return value

    with ResultStore.open(out, fresh=True) as store:
        store.write_spec(plan.study.model_dump(mode="json"))
        for ps in plan.scenarios:  # one part file per scenario, as tasks would leave them
            rows = template.assign(scenario_id=ps.id)
            store.append(rows.to_dict("records"))
        timed("consolidate", store.consolidate, plan)
        from distsim.runner import streaming

        timed("count_used", streaming.count_used, store, plan)  # the manifest's row counts
    # aggregation from the folder (what the run does after consolidating; the same API before
    # and after streaming aggregation, so `--code` can time older code); with a Ray session,
    # fanned out over its workers as `distsim run` does for large studies
    if session is None:
        result = timed("aggregate", load_result, out)
    else:
        from distsim.runner.study import StudyResult

        def fanned():
            res = StudyResult(
                plan.study, plan, out, None, pd.DataFrame(), pd.DataFrame(), pd.DataFrame()
            )
            agg = streaming.aggregate_store(
                ResultStore.reader(out), plan, session=streaming.fan_out_session(session, plan)
            )
            res.set_aggregates(agg)
            return res

        result = timed("aggregate", fanned)

    def files() -> None:
        atomic = __import__("distsim.runner.store", fromlist=["atomic_write_text"])
        atomic.atomic_write_text(out / SUMMARY_FILE, result.summary.to_csv(index=False))
        write_report_files(result)

    timed("report_files", files)
    timed("terminal", result.report)
    out_files = sum(1 for _ in out.iterdir())
    times["total"], cpu["total"] = sum(times.values()), sum(cpu.values())
    return {**times, **{f"cpu_{k}": v for k, v in cpu.items()}, "files": float(out_files)}


# ---------------------------------------------------------------- driver memory against rows

MEMORY_REPLICATIONS = 10  # rows per scenario: 2 architectures x 10 replications
MEMORY_DURATION_S = 300.0  # rows as long runs leave them: sketches and profiles of ~600 requests


def memory_study(rows: int) -> dict:
    n = max(rows // (2 * MEMORY_REPLICATIONS), 1)
    rates = [round(1.0 + 1.0 * i / max(n - 1, 1), 9) for i in range(n)]
    return study_dict(name=f"memory{rows}", duration_s=MEMORY_DURATION_S, warmup_s=10.0,
                      replications=MEMORY_REPLICATIONS, sweep={RATE: rates})  # fmt: skip


def build_folder(rows: int, out: Path, template: pd.DataFrame) -> int:
    """A finished study's folder of `rows` real rows, written as a run writes them (a part per
    1,024 rows through `ResultStore.append`, then `consolidate`): the template's rows (simulated
    once) under every scenario id, each row's sketch and profile texts made unique (an extra
    JSON key) so no two rows share a string in memory."""
    from distsim.runner.plan import plan_study
    from distsim.runner.store import ResultStore
    from distsim.spec.study import validate_study

    plan = plan_study(validate_study(memory_study(rows)))
    per = 2 * MEMORY_REPLICATIONS
    t = len(template)
    with ResultStore.open(out, fresh=True) as store:
        store.write_spec(plan.study.model_dump(mode="json"))
        chunk: list[pd.DataFrame] = []
        i = 0
        for ps in plan.scenarios:
            block = template.iloc[[(i + k) % t for k in range(per)]].copy()
            block["scenario_id"] = ps.id
            block["replication"] = [k // 2 for k in range(per)]
            block["architecture"] = [plan.architectures[k % 2] for k in range(per)]
            for col in ("ttft_sketch", "e2e_sketch", "ttft_profile"):
                block[col] = [f'{{"row":{i + k},' + text[1:] for k, text in enumerate(block[col])]
            i += len(block)
            chunk.append(block)
            if sum(len(c) for c in chunk) >= 1024:
                store.append(pd.concat(chunk, ignore_index=True).to_dict("records"))
                chunk.clear()
        if chunk:
            store.append(pd.concat(chunk, ignore_index=True).to_dict("records"))
        store.consolidate(plan)
    return len(plan.scenarios)


def measure_memory(out: Path) -> dict[str, float]:
    """In a fresh process: the driver's work after the last task on a finished folder —
    aggregate from the stored rows, write summary.csv / comparisons.csv / report.md /
    summary.json, render the terminal report — with peak RSS and times.

    The peak is VmHWM, the high-water mark of this process's own address space, read at each
    phase boundary. (getrusage's ru_maxrss would not do: Linux carries the parent's peak into a
    child started by fork/vfork and exec, so a child of this benchmark, which just built a
    folder of 10^5 rows, would report the builder's peak as its own.)"""

    import resource

    def peak() -> float:
        return _status_kib("VmHWM") / 1024

    def rss() -> float:
        return _status_kib("VmRSS") / 1024

    from distsim.runner.study import load_result, write_report_files

    base = peak()
    t0, c0 = time.perf_counter(), time.process_time()
    result = load_result(out)
    aggregated, rss_aggregated = peak(), rss()
    write_report_files(result, tables=True)
    files = peak()
    result.report()
    return {"base_mib": base, "aggregate_mib": aggregated, "rss_aggregate_mib": rss_aggregated,
            "files_mib": files, "peak_mib": peak(),
            "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            "summary_rows": float(len(result.summary)),
            "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


def _status_kib(field: str) -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return float(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_template() -> pd.DataFrame:
    from distsim.runner.plan import plan_study
    from distsim.runner.task import Unit, run_batch
    from distsim.spec.study import validate_study

    plan = plan_study(validate_study(memory_study(2 * MEMORY_REPLICATIONS)))
    ps = plan.scenarios[0]
    units = [Unit(ps.id, r, plan.architectures) for r in range(8)]
    return pd.DataFrame(run_batch({ps.id: ps.scenario}, units).rows)


def memory_series(sizes: list[int], code: str | None) -> None:
    import json
    import subprocess

    template = memory_template()
    payload = sum(template[c].str.len().mean() for c in ("ttft_sketch", "e2e_sketch",
                                                         "ttft_profile"))  # fmt: skip
    print(f"memory: rows of {MEMORY_DURATION_S:g} s runs ({template['n_requests'].mean():.0f} "
          f"requests), payload text {payload / 1024:.1f} KiB a row; 2 architectures x "
          f"{MEMORY_REPLICATIONS} replications a scenario; code: "
          f"{code or 'this checkout'}")  # fmt: skip
    env = dict(os.environ)
    if code:
        env["PYTHONPATH"] = code + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory(prefix="distsim-mem-") as tmp:
        for rows in sizes:
            out = Path(tmp) / f"r{rows}"
            t0 = time.perf_counter()
            scenarios = build_folder(rows, out, template)
            size_mb = sum(f.stat().st_size for f in out.rglob("*.parquet")) / 1e6
            built = time.perf_counter() - t0
            proc = subprocess.run([sys.executable, __file__, "--measure", str(out)], env=env,
                                  capture_output=True, text=True, check=False)  # fmt: skip
            if proc.returncode != 0:
                print(f"{rows:>7} rows: failed: {proc.stderr.strip().splitlines()[-1:]}")
                continue
            m = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{rows:>7} rows ({scenarios} scenarios, {size_mb:.0f} MB of Parquet, "
                  f"built in {built:.0f} s): driver peak {m['peak_mib']:.0f} MiB (after "
                  f"imports {m['base_mib']:.0f}, after aggregating "
                  f"{m['aggregate_mib']:.0f}, after report files {m['files_mib']:.0f}); "
                  f"aggregate + report {m['wall_s']:.1f} s wall, "
                  f"{m['cpu_s']:.1f} s CPU ({m['cpu_s'] / scenarios * 1e3:.1f} CPU-ms per "
                  f"scenario); ru_maxrss {m['ru_maxrss_mib']:.0f} MiB (the builder's peak "
                  "carried over)", flush=True)  # fmt: skip
            shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="10,100,1000,10000")
    parser.add_argument("--memory-rows", default="", help="e.g. 10000,24000,100000")
    parser.add_argument("--code", default=None, help="PYTHONPATH of other code to measure")
    parser.add_argument("--replications", type=int, default=MEMORY_REPLICATIONS,
                        help="--memory-rows: replications per scenario")  # fmt: skip
    parser.add_argument("--ray", type=int, default=0, help="fan out over N local Ray CPUs")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    if args.measure:
        import json

        print(json.dumps(measure_memory(Path(args.measure))))
        return
    if args.memory_rows:
        globals()["MEMORY_REPLICATIONS"] = args.replications
        memory_series([int(x) for x in args.memory_rows.split(",")], args.code)
        return
    sizes = [int(x) for x in args.scenarios.split(",")]
    print(f"cores: {os.cpu_count()}; reference loop {reference_loop_ms():.1f} ms; "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    results = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        session = None
        if args.ray:
            from distsim.runner import streaming
            from distsim.runner.execute import RaySession

            session = stack.enter_context(RaySession(workers=args.ray, notes=[]))
            print(f"aggregation fanned out over a local Ray session of {args.ray} CPUs for "
                  f">= {streaming.FAN_OUT_SCENARIOS} scenarios")  # fmt: skip
        for n in sizes:
            results[n] = t = one_size(n, Path(tmp), session)
            print(f"{n:>6} scenarios ({4 * n:>6} rows): wall {t['total']:7.2f} s, CPU "
                  f"{t['cpu_total']:7.2f} s; {t['cpu_total'] / n * 1e3:.1f} CPU-ms and "
                  f"{t['total'] / n * 1e3:.1f} wall-ms per scenario; {int(t['files'])} files in "
                  "the folder", flush=True)  # fmt: skip
            print("        phase (wall / driver CPU s): " + ", ".join(
                f"{k} {t[k]:.2f} / {t['cpu_' + k]:.2f}" for k in PHASES), flush=True)  # fmt: skip
    if len(sizes) >= 2:
        for key in ("cpu_total", "total"):
            fit = stats.linregress(sizes, [results[n][key] for n in sizes])
            print(f"fit ({'CPU' if key == 'cpu_total' else 'wall'}): driver s = "
                  f"{fit.intercept:.3f} + {fit.slope * 1e3:.2f} ms x scenarios "
                  f"(R^2 {fit.rvalue**2:.4f})")  # fmt: skip
    print(f"reference loop at the end {reference_loop_ms():.1f} ms; load "
          f"{os.getloadavg()[0]:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
