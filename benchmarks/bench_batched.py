"""Speed of the batched engine on studies/distserve.yaml at its goodput rate.

Prints, per architecture, simulated requests per wall second and simulated seconds per wall
second for single replications (one core, no Ray), at the arrival rate where that architecture's
goodput lies (the DistServe SLO: TTFT 0.4 s, TPOT 0.04 s). The default rates are the goodput
estimates of `distsim run studies/distserve.yaml` (total arrival rate = per-GPU goodput x 2
GPUs); pass --rate to use another.

    python benchmarks/bench_batched.py [--replications 3] [--rate RPS]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from distsim.simulate import simulate_requests
from distsim.spec import apply_overrides, load_study
from distsim.workload import generate

STUDY = Path(__file__).resolve().parent.parent / "studies" / "distserve.yaml"
# Goodput per GPU (TPOT <= 0.04 s) from `distsim run studies/distserve.yaml`, x 2 GPUs.
GOODPUT_RATE_RPS = {"monolithic": 2 * 3.74, "disaggregated": 2 * 5.93}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replications", type=int, default=3)
    parser.add_argument("--rate", type=float, default=None, help="total arrival rate, req/s")
    args = parser.parse_args()
    study = load_study(STUDY)
    print(f"batched engine on {STUDY.name}: duration {study.duration_s:g} s per replication")
    total_requests = 0
    total_wall = 0.0
    total_sim = 0.0
    for arch in study.architectures:
        rate = args.rate or GOODPUT_RATE_RPS[arch]
        sc = apply_overrides(study, {"workload.arrival.rate_rps": rate}).scenario()
        n = 0
        wall = 0.0
        sim_s = 0.0
        for r in range(args.replications):
            requests = generate(sc.workload, sc.duration_s, sc.seed, r)
            t0 = time.perf_counter()
            rep = simulate_requests(sc, arch, r, requests)
            wall += time.perf_counter() - t0
            n += len(requests)
            sim_s += float(rep.trace.done_s.max())
        print(
            f"  {arch:<14} rate {rate:6.2f} req/s: {n / wall:9,.0f} simulated requests/s, "
            f"{sim_s / wall:7.1f} simulated s per wall s ({n} requests, {wall:.2f} s wall)"
        )
        total_requests += n
        total_wall += wall
        total_sim += sim_s
    print(
        f"  {'all':<14} {'':17} {total_requests / total_wall:9,.0f} simulated requests/s, "
        f"{total_sim / total_wall:7.1f} simulated s per wall s"
    )


if __name__ == "__main__":
    main()
