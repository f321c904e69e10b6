"""Fit the per-iteration overhead of each shipped profile preset, once, on named runs.

The DistServe profiles time the GPU work of a step; a serving engine also spends CPU time every
iteration (scheduling, sampling, detokenising, launching kernels). One constant per preset,
`overhead_s`, stands for it. Method: for each preset, a grid of overheads (0 to 10 ms in
0.5 ms steps); for each, the named unsaturated runs of that preset's system are replayed
(`distserve.py`), and the value minimising the sum of squared log ratios simulated / measured
of TPOT P50 and TPOT P90 over those runs is chosen. TTFT is not used (it is dominated by the
prefill fit and queueing). The named runs are the unsaturated runs (measured TTFT P90 < 1 s,
TPOT P90 < 0.2 s) of the system without pipeline parallelism:

    vllm preset:      vllm-100-1, vllm-200-2
    distserve preset: distserve-c21d11-300-3, distserve-c21d11-300-6

Then the same for a pipeline-parallel decode instance, whose engine keeps one micro-batch per
stage in flight (part of the per-iteration CPU work overlaps another micro-batch's GPU work):
only the pipelined pool's overhead varies (the prefill pool keeps the preset's), on the
unsaturated runs with pipeline parallelism:

    distserve preset, pipelined: distserve-c21d12-400-4, distserve-c21d12-800-8

The results go into `distsim.sim.step_time.PROFILE_OVERHEAD` and `PROFILE_PIPELINE_OVERHEAD_S`
(and docs/fidelity.md).

    python benchmarks/fidelity/fit_overhead.py
"""

from __future__ import annotations

import numpy as np
from distserve import DATA, measured_run, simulate_run

FIT_RUNS = {
    "vllm": ["vllm-100-1", "vllm-200-2"],
    "distserve": ["distserve-c21d11-300-3", "distserve-c21d11-300-6"],
}
PIPELINED_RUNS = {"distserve": ["distserve-c21d12-400-4", "distserve-c21d12-800-8"]}
GRID_S = np.arange(0.0, 0.0105, 0.0005)


def fit(label: str, runs: list[str], pipelined: bool) -> None:
    measured = {r: measured_run(DATA / f"{r}.csv") for r in runs}
    best = (np.inf, 0.0)
    for overhead in GRID_S:
        loss = 0.0
        for r in runs:
            path = DATA / f"{r}.csv"
            if pipelined:
                sim = simulate_run(path, pipeline_overhead_s=float(overhead))
            else:
                sim = simulate_run(path, float(overhead))
            for key in ("tpot_p50_s", "tpot_p90_s"):
                loss += np.log(sim[key] / measured[r][key]) ** 2
        print(f"{label:<20} overhead {1e3 * overhead:4.1f} ms  loss {loss:.4f}")
        best = min(best, (loss, float(overhead)))
    print(f"{label}: overhead_s = {best[1]:.4f} (loss {best[0]:.4f})\n")


def main() -> None:
    for preset, runs in FIT_RUNS.items():
        fit(preset, runs, pipelined=False)
    for preset, runs in PIPELINED_RUNS.items():
        fit(f"{preset} pipelined", runs, pipelined=True)


if __name__ == "__main__":
    main()
