"""Exclusive engine speed: the fast (numba) path against the SimPy reference, in one run.

Prints, for both architectures of studies/default.yaml with the arrival rate raised until the
architecture's busiest pool has an offered load of 0.8 (issue 7, target 1):

- simulated requests per second per core, end to end (`distsim.sim.replication.simulate`: workload
  generation + engine + metrics) and for the engine alone, fast and SimPy side by side, and the
  ratio; the fast path over a long run (default 360,000 simulated seconds), SimPy over 3,600 s;
- where the fast path's time goes (generate / engine / summarize / the rest);
- the issue-2 figure: SimPy requests per second at 6 req/s on 4 GPUs over 3,600 s;
- what one short default replication (300 s, ~600 requests) costs each way, and the JIT
  compile cost (fresh cache) and cache-load cost, each measured in a fresh process;
- the technique comparison: the same FCFS recursion as a pure-Python heapq loop;
- the engine alone for each `routing` (central, round_robin, random, least_loaded).

"Per core": everything runs in this one process on one thread; times are CPU seconds
(`time.process_time`), the best of `--repeats`, so other work on a shared machine inflates them
less than wall time (wall time is printed too).

    python benchmarks/bench_engine.py            # full run, about 2 minutes
    python benchmarks/bench_engine.py --quick    # shorter runs, for a smoke check
"""

from __future__ import annotations

import argparse
import heapq
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from distsim.sim.metrics import offered_load, summarize
from distsim.sim.replication import architecture_of, run_engine, simulate
from distsim.sim.serving import token_rates
from distsim.sim.timeline import ServiceTimes, Timeline
from distsim.spec.study import Monolithic, Scenario, load_study
from distsim.workload.generate import Requests, generate

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STUDY = ROOT / "studies" / "default.yaml"


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """Best CPU seconds and best wall seconds over `repeats` calls, and the last result."""
    best_cpu = best_wall = float("inf")
    result = None
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        result = fn()
        c1, w1 = time.process_time(), time.perf_counter()
        best_cpu, best_wall = min(best_cpu, c1 - c0), min(best_wall, w1 - w0)
    return best_cpu, best_wall, result


def scenario_at_load(path: Path, arch: str, load: float, duration_s: float) -> Scenario:
    """The study's scenario with the arrival rate scaled so `arch`'s busiest pool has `load`."""
    base = load_study(path).scenario()
    busiest = max(offered_load(base.workload, token_rates(base), base.architectures[arch]).values())
    rate = base.workload.arrival.rate_rps * load / busiest
    overrides = {"workload.arrival.rate_rps": rate, "duration_s": duration_s}
    return load_study(path, overrides).scenario()


def scenario_at_rate(path: Path, rate_rps: float, duration_s: float) -> Scenario:
    overrides = {"workload.arrival.rate_rps": rate_rps, "duration_s": duration_s}
    return load_study(path, overrides).scenario()


def rps(n: int, seconds: float) -> str:
    return f"{n / seconds:>12,.0f}"


# ---------------------------------------------------------------- fast vs SimPy at load 0.8


def bench_architecture(
    arch: str, load: float, fast_s: float, simpy_s: float, repeats: int
) -> dict[str, float]:
    """Requests/s/core of both implementations, end to end and engine only, and the split."""
    fast_sc = scenario_at_load(DEFAULT_STUDY, arch, load, fast_s)
    slow_sc = scenario_at_load(DEFAULT_STUDY, arch, load, simpy_s)
    spec_arch = architecture_of(fast_sc, arch)
    loads = offered_load(fast_sc.workload, token_rates(fast_sc), spec_arch)
    rate = fast_sc.workload.arrival.rate_rps
    print(
        f"\n== {arch}: rate {rate:.3f} req/s, offered load "
        + ", ".join(f"{k} {v:.3f}" for k, v in loads.items())
        + " =="
    )

    # Fast path, end to end and by component (same draws as the end-to-end call).
    e2e_cpu, e2e_wall, rep = timed(lambda: simulate(fast_sc, arch, 0), repeats)
    n_fast = len(rep.requests)
    gen_cpu, _, requests = timed(
        lambda: generate(fast_sc.workload, fast_sc.duration_s, fast_sc.seed, 0), repeats
    )
    rates = token_rates(fast_sc)
    eng_cpu, _, trace = timed(lambda: run_engine(requests, spec_arch, rates), repeats)
    sum_cpu, _, _ = timed(lambda: summarize(requests, trace, fast_sc.warmup_s, loads), repeats)

    # SimPy reference, end to end and engine only, over the shorter run.
    s_e2e_cpu, s_e2e_wall, s_rep = timed(
        lambda: simulate(slow_sc, arch, 0, implementation="simpy"), repeats
    )
    n_slow = len(s_rep.requests)
    s_req = s_rep.requests
    s_eng_cpu, _, _ = timed(
        lambda: run_engine(s_req, spec_arch, rates, implementation="simpy"), repeats
    )
    f_eng_short, _, _ = timed(lambda: run_engine(s_req, spec_arch, rates), repeats)

    print(f"{'':34s}{'requests':>12s}{'req/s/core':>13s}{'ns/request':>12s}")
    rows = [
        (f"fast end to end ({fast_s:,.0f} s)", n_fast, e2e_cpu),
        ("  generate (workload draws)", n_fast, gen_cpu),
        ("  engine (fast_exclusive)", n_fast, eng_cpu),
        ("  summarize (metrics)", n_fast, sum_cpu),
        ("  rest (offered load, masks)", n_fast, max(e2e_cpu - gen_cpu - eng_cpu - sum_cpu, 0)),
        (f"SimPy end to end ({simpy_s:,.0f} s)", n_slow, s_e2e_cpu),
        ("  engine (simpy_exclusive)", n_slow, s_eng_cpu),
        ("fast engine on the SimPy run", n_slow, f_eng_short),
    ]
    for label, n, cpu in rows:
        per = f"{n / cpu:>13,.0f}" if cpu > 0 else f"{'-':>13s}"
        print(f"{label:34s}{n:>12,d}{per}{cpu / n * 1e9:>12.1f}")
    e2e_ratio = (n_fast / e2e_cpu) / (n_slow / s_e2e_cpu)
    eng_ratio = (n_fast / eng_cpu) / (n_slow / s_eng_cpu)
    print(
        f"ratio fast/SimPy: end to end {e2e_ratio:,.0f}x, engine only {eng_ratio:,.0f}x "
        f"(wall: fast {n_fast / e2e_wall:,.0f} req/s, SimPy {n_slow / s_e2e_wall:,.0f} req/s)"
    )
    return {"fast_e2e": n_fast / e2e_cpu, "ratio_e2e": e2e_ratio, "ratio_engine": eng_ratio}


# ---------------------------------------------------------------- issue 2 figure


def bench_issue2(repeats: int) -> None:
    """SimPy (and fast) requests/s at 6 req/s on the default 4 GPUs over 3,600 s."""
    sc = scenario_at_rate(DEFAULT_STUDY, 6.0, 3600.0)
    print("\n== issue-2 figure: 6 req/s, 4 GPUs, 3,600 s (end to end, per core) ==")
    for arch in sc.architectures:
        cpu, _, rep = timed(lambda a=arch: simulate(sc, a, 0, implementation="simpy"), repeats)
        fcpu, _, _ = timed(lambda a=arch: simulate(sc, a, 0), repeats)
        n = len(rep.requests)
        loads = offered_load(sc.workload, token_rates(sc), architecture_of(sc, arch))
        busiest = max(loads.values())
        print(
            f"{arch:14s} {n:>7,d} requests  SimPy {rps(n, cpu)} req/s   "
            f"fast {rps(n, fcpu)} req/s   (busiest pool load {busiest:.2f})"
        )


# ---------------------------------------------------------------- short runs and JIT cost


def bench_short(repeats: int) -> None:
    """One replication of the default study as written: fixed costs matter at this size."""
    sc = load_study(DEFAULT_STUDY).scenario()
    print("\n== one default replication (300 s at 2 req/s), milliseconds of CPU ==")
    for arch in sc.architectures:
        s_cpu, _, rep = timed(lambda a=arch: simulate(sc, a, 0, implementation="simpy"), repeats)
        f_cpu, _, _ = timed(lambda a=arch: simulate(sc, a, 0), repeats)
        print(
            f"{arch:14s} {len(rep.requests):>5d} requests  SimPy {s_cpu * 1e3:7.1f} ms   "
            f"fast {f_cpu * 1e3:7.1f} ms"
        )


_FIRST_CALL = """
import time
t0 = time.perf_counter()
from distsim.sim.replication import simulate
from distsim.spec.study import load_study
sc = load_study({study!r}).scenario()
t1 = time.perf_counter()
for arch in sc.architectures:
    simulate(sc, arch, 0)
t2 = time.perf_counter()
for arch in sc.architectures:
    simulate(sc, arch, 0)
t3 = time.perf_counter()
print(t1 - t0, (t2 - t1) - (t3 - t2))
"""


def bench_jit() -> None:
    """First-call cost in a fresh process: compile into an empty cache, then load from it."""
    print("\n== JIT: first call of both architectures in a fresh process (wall seconds) ==")
    code = _FIRST_CALL.format(study=str(DEFAULT_STUDY))
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("compile (empty cache)", "load from cache"):
            out = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            ).stdout.split()
            print(f"{label:24s} {float(out[1]):6.2f} s   (import distsim: {float(out[0]):.2f} s)")


# ---------------------------------------------------------------- technique comparison


def python_heapq_monolithic(arrival_s: np.ndarray, service_s: np.ndarray, gpus: int) -> list:
    """The monolithic FCFS recursion as a plain Python loop over a heapq of GPU free times."""
    free = [0.0] * gpus
    done = []
    for t, s in zip(arrival_s.tolist(), service_s.tolist(), strict=True):
        start = max(t, free[0])
        d = start + s
        heapq.heapreplace(free, d)
        done.append(d)
    return done


def bench_techniques(repeats: int) -> None:
    sc = scenario_at_load(DEFAULT_STUDY, "monolithic", 0.8, 36_000.0)
    requests: Requests = generate(sc.workload, sc.duration_s, sc.seed, 0)
    arch = sc.architectures["monolithic"]
    assert isinstance(arch, Monolithic)
    service = ServiceTimes.of(requests, token_rates(sc))
    total = service.prefill_s + service.decode_s
    n = len(requests)
    py_cpu, _, _ = timed(
        lambda: python_heapq_monolithic(requests.arrival_s, total, arch.gpus), repeats
    )
    nb_cpu, _, _ = timed(lambda: run_engine(requests, arch, token_rates(sc)), repeats)
    print("\n== technique: the monolithic engine alone, load 0.8, per core ==")
    print(f"pure-Python heapq loop {rps(n, py_cpu)} req/s ({py_cpu / n * 1e9:6.0f} ns/request)")
    print(f"numba heap loop        {rps(n, nb_cpu)} req/s ({nb_cpu / n * 1e9:6.0f} ns/request)")


def bench_routing(repeats: int) -> None:
    """The engine alone (fast path) per `routing`, both architectures at load 0.8: routed pools
    keep one queue per GPU (least_loaded scans every GPU per request)."""
    from distsim.sim.replication import routing_draws

    print("\n== routing: the engine alone, load 0.8, per core (fast path) ==")
    for name in ("monolithic", "disaggregated"):
        sc = scenario_at_load(DEFAULT_STUDY, name, 0.8, 36_000.0)
        requests: Requests = generate(sc.workload, sc.duration_s, sc.seed, 0)
        n = len(requests)
        u = routing_draws(sc.seed, 0, n)
        rates = token_rates(sc)
        for routing in ("central", "round_robin", "random", "least_loaded"):
            arch = sc.architectures[name].model_copy(update={"routing": routing})

            def engine(arch=arch, requests=requests, rates=rates, u=u) -> Timeline:
                return run_engine(requests, arch, rates, route_u=u)

            cpu, _, _ = timed(engine, repeats)
            print(f"{name:14s} {routing:13s} {rps(n, cpu)} req/s ({cpu / n * 1e9:6.0f} ns/request)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", type=float, default=0.8)
    parser.add_argument("--fast-duration-s", type=float, default=360_000.0)
    parser.add_argument("--simpy-duration-s", type=float, default=3_600.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="short runs, one repeat")
    args = parser.parse_args()
    if args.quick:
        args.fast_duration_s, args.simpy_duration_s, args.repeats = 36_000.0, 600.0, 1

    print(
        f"python {sys.version.split()[0]}, numpy {np.__version__}, "
        f"{os.cpu_count()} CPUs; one process, one thread; CPU time, best of {args.repeats}"
    )
    # Warm up: compile (or load) the kernels before anything is timed.
    warm = load_study(DEFAULT_STUDY).scenario()
    for arch in warm.architectures:
        simulate(warm, arch, 0)

    results = {
        arch: bench_architecture(
            arch, args.load, args.fast_duration_s, args.simpy_duration_s, args.repeats
        )
        for arch in warm.architectures
    }
    bench_issue2(args.repeats)
    bench_short(args.repeats)
    bench_techniques(args.repeats)
    bench_routing(args.repeats)
    bench_jit()

    print("\n== targets (issue 7.1): >= 2,000,000 req/s/core end to end, >= 40x SimPy ==")
    for arch, r in results.items():
        ok = r["fast_e2e"] >= 2e6 and r["ratio_e2e"] >= 40
        print(
            f"{arch:14s} {r['fast_e2e']:>12,.0f} req/s/core  {r['ratio_e2e']:6,.0f}x SimPy "
            f"end to end ({r['ratio_engine']:,.0f}x engine only)  {'met' if ok else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
