"""Fit vLLM's KV reserve once, on named runs: the KV the real engine held at most.

vLLM sizes its KV cache at start-up: gpu-memory-utilization x the GPU's memory, less the weights
and the peak memory of a profiling step of max-num-batched-tokens (activations, sampler). That
reserve is not in the DistServe capacity table (`max_num_tokens.csv`, DistServe's own engine,
1% kept), and it is what makes overloaded vLLM queue: once the cache is full, new prompts wait.

Method: in the two named vLLM runs that fill the cache (vllm-300-3, vllm-400-4; their measured
TTFT climbs from the moment it is full), the KV held at time t is estimated from the measured
per-request times alone: every request between its first and last token holds its prompt and
the tokens generated so far (linear between the two times), rounded up to whole 16-token
blocks. The largest value over a 50 ms grid, over both runs, is the capacity the engine showed;
`kv_reserved_gb` is the per-GPU reserve that gives that capacity through distsim's memory
formula (the a100-80gb preset's 80 GB, memory_fraction 0.95 as the runs were started, the
opt-13b preset's weights and KV bytes per token). Nothing from a simulation enters the fit.

    python benchmarks/fidelity/fit_kv.py
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from distserve import DATA

from distsim.spec.hardware import GB, GPU_PRESETS, MODEL_PRESETS

FIT_RUNS = ["vllm-300-3", "vllm-400-4"]
BLOCK_TOKENS = 16
MEMORY_FRACTION = 0.95  # the runs' --gpu-memory-utilization
GRID_S = 0.05


def peak_kv_tokens(frame: pd.DataFrame) -> tuple[float, float]:
    """The largest estimated KV held (tokens, whole blocks) over the run, and when it is first
    reached."""
    first = (frame["arrival_s"] + frame["measured_ttft_s"]).to_numpy()
    last = (frame["arrival_s"] + frame["measured_e2e_s"]).to_numpy()
    prompt = frame["prompt_tokens"].to_numpy()
    output = frame["output_tokens"].to_numpy()
    best = (0.0, 0.0)
    for t in np.arange(0.0, last.max(), GRID_S):
        on = (first <= t) & (t < last)
        span = np.maximum(last[on] - first[on], 1e-9)
        generated = 1 + np.floor((t - first[on]) / span * (output[on] - 1))
        held = np.ceil((prompt[on] + generated) / BLOCK_TOKENS) * BLOCK_TOKENS
        if held.sum() > best[0]:
            best = (float(held.sum()), float(t))
    return best


def main() -> None:
    peaks = {}
    for run in FIT_RUNS:
        tokens, at = peak_kv_tokens(pd.read_csv(DATA / f"{run}.csv"))
        peaks[run] = tokens
        print(f"{run}: KV held at most {tokens:,.0f} tokens (t = {at:.1f} s)")
    capacity = max(peaks.values())
    model, gpu = MODEL_PRESETS["opt-13b"], GPU_PRESETS["a100-80gb"]
    kv_gb = capacity * model.kv_bytes_per_token / GB
    reserved = gpu.hbm_gb * MEMORY_FRACTION - (model.weight_bytes / GB + kv_gb)
    reserved = math.floor(reserved * 10) / 10  # to 0.1 GB, down: the cache holds the peak
    print(
        f"capacity {capacity:,.0f} tokens = {kv_gb:.2f} GB of KV; weights "
        f"{model.weight_bytes / GB:.2f} GB; {gpu.hbm_gb:g} GB x {MEMORY_FRACTION} -> "
        f"kv_reserved_gb = {reserved:.1f}"
    )


if __name__ == "__main__":
    main()
