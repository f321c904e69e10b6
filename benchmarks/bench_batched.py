"""Speed of the batched engine on studies/distserve.yaml at its goodput rate: fast vs SimPy.

Prints, per architecture, simulated requests per wall second and simulated seconds per wall
second for single replications (one core, no Ray), at the arrival rate where that architecture's
goodput lies (the DistServe SLO: TTFT 0.4 s, TPOT 0.04 s), for both implementations side by
side in the same run: `simpy` (the first version, one SimPy process per instance, kept as the
reference) and `fast` (the compiled replay, the default). Each replication is timed end to end
(`simulate_requests`: engine + metrics, as the first version's figures were) `--repeats` times
per implementation, alternating, and the best time is kept, so both see the same machine load.
Also printed: the engine alone, the kernel's compile/load time (paid once per process, not in
the figures), and whether the two implementations gave identical results.

The default rates are the goodput estimates of `distsim run studies/distserve.yaml` (total
arrival rate = per-GPU goodput x 2 GPUs); pass --rate to use another.

    python benchmarks/bench_batched.py [--replications 3] [--repeats 3] [--rate RPS]
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

import numpy as np

from distsim.sim import batched, fast_batched, serving
from distsim.sim.replication import simulate_requests
from distsim.spec.study import apply_overrides, load_study
from distsim.workload.generate import generate

STUDY = Path(__file__).resolve().parent.parent / "studies" / "distserve.yaml"
# Goodput per GPU (TPOT <= 0.04 s) from `distsim run studies/distserve.yaml`, x 2 GPUs.
GOODPUT_RATE_RPS = {"monolithic": 2 * 3.74, "disaggregated": 2 * 5.93}
IMPLEMENTATIONS = ("simpy", "fast")


def _best(fn, repeats: int) -> tuple[float, object]:  # noqa: ANN001
    best = float("inf")
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _identical(a, b) -> bool:  # noqa: ANN001
    """Same per-request times, pool arrays and serving statistics, bit for bit."""
    same = np.array_equal(a.first_token_s, b.first_token_s, equal_nan=True)
    same &= np.array_equal(a.done_s, b.done_s, equal_nan=True)
    for name in a.pools:
        same &= np.array_equal(a.pools[name].wait_s, b.pools[name].wait_s)
        same &= np.array_equal(a.pools[name].busy_s, b.pools[name].busy_s)
    sa, sb = a.serving, b.serving
    same &= (sa.preemptions, sa.recomputed_tokens) == (sb.preemptions, sb.recomputed_tokens)
    same &= repr(sa.batch_size_mean) == repr(sb.batch_size_mean)
    same &= repr(sa.kv_use_mean) == repr(sb.kv_use_mean)
    for field in ("request", "link", "start_s", "end_s"):
        same &= np.array_equal(getattr(sa.transfers, field), getattr(sb.transfers, field))
    return bool(same)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replications", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="timings per replication (best)")
    parser.add_argument("--rate", type=float, default=None, help="total arrival rate, req/s")
    args = parser.parse_args()
    study = load_study(STUDY)
    t0 = time.perf_counter()
    fast_batched.load_kernels()
    print(f"fast kernel compile or cache load: {time.perf_counter() - t0:.2f} s (once per process)")
    print(
        f"batched engine on {STUDY.name}: duration {study.duration_s:g} s per replication, "
        f"{args.replications} replication(s), best of {args.repeats}, end to end (engine + metrics)"
    )
    totals = {impl: [0, 0.0, 0.0] for impl in IMPLEMENTATIONS}  # requests, wall, simulated s
    all_identical = True
    for arch in study.architectures:
        rate = args.rate or GOODPUT_RATE_RPS[arch]
        sc = apply_overrides(study, {"workload.arrival.rate_rps": rate}).scenario()
        plan = serving.configure(sc, sc.architectures[arch])
        n = 0
        sim_s = 0.0
        wall = dict.fromkeys(IMPLEMENTATIONS, 0.0)
        engine = dict.fromkeys(IMPLEMENTATIONS, 0.0)
        for r in range(args.replications):
            requests = generate(sc.workload, sc.duration_s, sc.seed, r)
            traces = {}
            for impl in IMPLEMENTATIONS:
                run_all = partial(simulate_requests, sc, arch, r, requests, impl)
                dt, rep = _best(run_all, args.repeats)
                wall[impl] += dt
                traces[impl] = rep.trace
                dt, _ = _best(partial(batched.run, requests, plan, None, impl), args.repeats)
                engine[impl] += dt
            all_identical &= _identical(traces["simpy"], traces["fast"])
            n += len(requests)
            sim_s += float(traces["fast"].done_s.max())
        print(f"  {arch} at {rate:.2f} req/s ({n} requests, {sim_s:,.0f} simulated s):")
        for impl in IMPLEMENTATIONS:
            print(
                f"    {impl:<6} {n / wall[impl]:11,.0f} simulated requests/s, "
                f"{sim_s / wall[impl]:9,.0f} simulated s per wall s "
                f"({wall[impl]:.3f} s wall; engine alone {1e6 * engine[impl] / n:6.2f} us/request)"
            )
        print(f"    fast / simpy: {wall['simpy'] / wall['fast']:.1f}x")
        for impl in IMPLEMENTATIONS:
            totals[impl][0] += n
            totals[impl][1] += wall[impl]
            totals[impl][2] += sim_s
    print("  all:")
    for impl in IMPLEMENTATIONS:
        n, w, s = totals[impl]
        print(
            f"    {impl:<6} {n / w:11,.0f} simulated requests/s, "
            f"{s / w:9,.0f} simulated s per wall s"
        )
    print(f"    fast / simpy: {totals['simpy'][1] / totals['fast'][1]:.1f}x")
    print(f"  results identical (per-request times, pools, serving stats): {all_identical}")


if __name__ == "__main__":
    main()
