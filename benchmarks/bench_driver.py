"""Driver time after the last task against the number of scenarios (issue 18), with a fitted line.

    python benchmarks/bench_driver.py                         # 10, 100, 1000 scenarios
    python benchmarks/bench_driver.py --scenarios 10,100,1000,10000

What `distsim run` does in the driver once the last row has arrived, timed phase by phase on
rows that are already stored (no Ray): consolidate the part files into replications.parquet,
aggregate (summary and comparisons), write summary.csv / comparisons.csv / report.md with its
plots / summary.json, and render the terminal report.

The study: a sweep of `workload.arrival.rate_rps` over N values (2 architectures x 2
replications, so 4N rows). The rows are real: one scenario's rows are simulated once
(`run_batch`, 20 s replications) and copied to every scenario id, so the time measured is the
driver's, not the simulation's. Fits driver seconds = a + b x scenarios (scipy.stats.linregress)
and prints b in ms per scenario; the target is b <= 20 ms on 2 cores. Prints figures only.
"""

from __future__ import annotations

import argparse
import os
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


def study(n: int) -> dict:
    rates = [round(1.0 + 3.0 * i / max(n - 1, 1), 6) for i in range(n)]
    return study_dict(name=f"sweep{n}", duration_s=20.0, warmup_s=2.0, replications=2,
                      sweep={RATE: rates})  # fmt: skip


def one_size(n: int, folder: Path) -> dict[str, float]:
    from distsim.runner.plan import plan_study
    from distsim.runner.store import SUMMARY_FILE, ResultStore
    from distsim.runner.study import StudyResult, aggregate_rows, write_report_files
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
        published = timed("consolidate", store.consolidate, plan)
        summary, comparisons, detail = timed("aggregate", aggregate_rows, published, plan)
        result = StudyResult(study=plan.study, plan=plan, out_dir=out, replications=published,
                             summary=summary, comparisons=comparisons,
                             comparisons_detail=detail)  # fmt: skip

        def files() -> None:
            store.write_csv(SUMMARY_FILE, summary)
            write_report_files(result)

        timed("report_files", files)
        timed("terminal", result.report)
    out_files = sum(1 for _ in out.iterdir())
    times["total"], cpu["total"] = sum(times.values()), sum(cpu.values())
    return {**times, **{f"cpu_{k}": v for k, v in cpu.items()}, "files": float(out_files)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="10,100,1000")
    args = parser.parse_args()
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    sizes = [int(x) for x in args.scenarios.split(",")]
    print(f"cores: {os.cpu_count()}; reference loop {reference_loop_ms():.1f} ms; "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            results[n] = t = one_size(n, Path(tmp))
            print(f"{n:>6} scenarios ({4 * n:>6} rows): wall {t['total']:7.2f} s, CPU "
                  f"{t['cpu_total']:7.2f} s = consolidate {t['cpu_consolidate']:.2f} + aggregate "
                  f"{t['cpu_aggregate']:.2f} + report files {t['cpu_report_files']:.2f} + "
                  f"terminal {t['cpu_terminal']:.2f}; {t['cpu_total'] / n * 1e3:.1f} CPU-ms and "
                  f"{t['total'] / n * 1e3:.1f} wall-ms per scenario; {int(t['files'])} files in "
                  "the folder", flush=True)  # fmt: skip
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
