"""How close is the batched engine to real serving? Replays measured vLLM and DistServe runs.

Each CSV is one run of a real system serving OPT-13B on A100-80GB GPUs (data and attribution:
benchmarks/fidelity/data/README.md, from the DistServe project, Apache-2.0). Its requests
(`arrival_s`, `prompt_tokens`, `output_tokens`; nothing else is read to simulate) go through the
batched engine with the shipped DistServe profile, each system configured as the data's README
describes it (`SYSTEMS` below); nothing is fitted per run. Per run it reports TTFT and TPOT
P50/P90 and SLO attainment (TTFT <= 0.2 s and TPOT <= 0.1 s), defined as in the data's README:
TTFT ends at the first token; TPOT = (last - first token) / (N - 1) over requests with N >= 2
output tokens, and a one-token request meets the TPOT part; quantiles numpy's default (linear).

    python benchmarks/fidelity/distserve.py                  # the shipped runs: a table
    python benchmarks/fidelity/distserve.py --data DIR --json FILE

With `--data`, every `vllm-<N>-<RATE>.csv`, `distserve-c21d11-<N>-<RATE>.csv` and
`distserve-c21d12-<N>-<RATE>.csv` in DIR is simulated (the measured columns may be absent) and
`--json` receives a list with one object per run: run, ttft_p50_s, ttft_p90_s, tpot_p50_s,
tpot_p90_s, slo_attainment.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from distsim.sim import batched, serving
from distsim.spec.study import Study
from distsim.workload.generate import Requests

DATA = Path(__file__).resolve().parent / "data"
RUN_NAME = re.compile(r"^(vllm|distserve-c21d11|distserve-c21d12)-(\d+)-(\d+(?:\.\d+)?)$")
SLO_TTFT_S, SLO_TPOT_S = 0.2, 0.1
# A run is unsaturated when its measured TTFT P90 < 1 s and TPOT P90 < 0.2 s (the rule).
UNSATURATED = {"ttft_p90_s": 1.0, "tpot_p90_s": 0.2}
METRICS = ("ttft_p50_s", "ttft_p90_s", "tpot_p50_s", "tpot_p90_s")

# Each system as the data's README describes it, in spec fields: the scheduler preset named after
# it, and the settings of these runs where they differ from the preset or are not scheduling.
_DISTSERVE = {
    "kind": "disaggregated",
    "scheduler": "distserve",  # per-stage FCFS: prefill 128 requests / 8,192 tokens, decode 1,024
    "prefill_gpus": 2,
    "prefill_tensor_parallel": 2,
    "decode_tensor_parallel": 1,
    "kv_link_gb_s": 300.0,  # one node, NVLink (A100: 600 GB/s both ways)
}
KV_RESERVED_GB = 4.1  # benchmarks/fidelity/fit_kv.py
SYSTEMS: dict[str, dict[str, Any]] = {
    "vllm": {
        "step_time": {"model": "profile", "preset": "vllm"},
        "architecture": {
            "kind": "monolithic",
            "scheduler": "vllm",
            "gpus": 1,
            "tensor_parallel": 1,
            "max_batch_size": 1024,  # these runs' max-num-seqs (the preset: vLLM's default 256)
            "max_prefill_tokens": 16384,  # these runs' max-num-batched-tokens (preset: 2048)
            # vLLM sizes its KV cache from memory, not DistServe's table: the reserve (its
            # profiling step's activations) fitted once by fit_kv.py on vllm-300-3, vllm-400-4
            "kv_reserved_gb": KV_RESERVED_GB,
        },
        "memory_fraction": 0.95,  # these runs' --gpu-memory-utilization
    },
    "distserve-c21d11": {
        "step_time": {"model": "profile", "preset": "distserve"},
        "architecture": {**_DISTSERVE, "decode_gpus": 1},
    },
    "distserve-c21d12": {
        "step_time": {"model": "profile", "preset": "distserve"},
        "architecture": {**_DISTSERVE, "decode_gpus": 2, "decode_pipeline_parallel": 2},
    },
}


def plan_of(
    system: str, overhead_s: float | None = None, pipeline_overhead_s: float | None = None
) -> serving.ServingConfig:
    """The batched engine's configuration of one system, through the public spec
    (`overhead_s`: a per-iteration overhead instead of the preset's, for fitting it;
    `pipeline_overhead_s`: the same for pipeline-parallel pools only)."""
    setup = SYSTEMS[system]
    step_time = dict(setup["step_time"])
    if overhead_s is not None:
        step_time["overhead_s"] = overhead_s
    study = Study.model_validate(
        {
            "name": system,
            "seed": 0,
            "replications": 2,
            "engine": "batched",
            "model": {"preset": "opt-13b"},
            "gpu": {"preset": "a100-80gb", "memory_fraction": setup.get("memory_fraction", 0.9)},
            "step_time": step_time,
            "duration_s": 1.0,
            "workload": {
                "arrival": {"process": "poisson", "rate_rps": 1.0},
                "prompt_tokens": {"dist": "constant", "value": 1},
                "output_tokens": {"dist": "constant", "value": 1},
            },
            "architectures": {"a": setup["architecture"]},
            "baseline": "a",
        }
    )
    sc = study.scenario()
    plan = serving.configure(sc, sc.architectures["a"])
    if pipeline_overhead_s is None:
        return plan
    pools = {
        name: replace(pool, step=replace(pool.step, overhead_s=pipeline_overhead_s))
        if pool.pipeline_parallel > 1
        else pool
        for name, pool in plan.pools.items()
    }
    return replace(plan, pools=pools)


def summarise(ttft: np.ndarray, tpot: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """TTFT/TPOT P50/P90 and SLO attainment as the data's README defines them."""
    multi = output >= 2
    met = (ttft <= SLO_TTFT_S) & (~multi | (tpot <= SLO_TPOT_S))
    return {
        "ttft_p50_s": float(np.quantile(ttft, 0.5)),
        "ttft_p90_s": float(np.quantile(ttft, 0.9)),
        "tpot_p50_s": float(np.quantile(tpot[multi], 0.5)),
        "tpot_p90_s": float(np.quantile(tpot[multi], 0.9)),
        "slo_attainment": float(met.mean()),
    }


def simulate_run(
    path: Path, overhead_s: float | None = None, pipeline_overhead_s: float | None = None
) -> dict[str, Any]:
    """One run's simulated figures."""
    m = RUN_NAME.match(path.stem)
    assert m is not None
    frame = pd.read_csv(path)
    requests = Requests(
        arrival_s=frame["arrival_s"].to_numpy(dtype=float),
        prompt_tokens=frame["prompt_tokens"].to_numpy(dtype=np.int64),
        output_tokens=frame["output_tokens"].to_numpy(dtype=np.int64),
    )
    trace = batched.run(requests, plan_of(m.group(1), overhead_s, pipeline_overhead_s))
    output = requests.output_tokens
    ttft = trace.first_token_s - requests.arrival_s
    with np.errstate(divide="ignore", invalid="ignore"):
        tpot = np.where(output >= 2, (trace.done_s - trace.first_token_s) / (output - 1), np.nan)
    return {"run": path.stem, **summarise(ttft, tpot, output)}


def measured_run(path: Path) -> dict[str, Any]:
    """One run's measured figures (the data's measured columns)."""
    frame = pd.read_csv(path)
    output = frame["output_tokens"].to_numpy()
    ttft = frame["measured_ttft_s"].to_numpy(dtype=float)
    tpot = frame["measured_tpot_s"].to_numpy(dtype=float)
    return {"run": path.stem, **summarise(ttft, tpot, output)}


def runs_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.csv") if RUN_NAME.match(p.stem))


def table(folder: Path) -> list[dict[str, Any]]:
    """Measured vs simulated per run, with relative errors and whether the run is unsaturated."""
    rows = []
    for path in runs_in(folder):
        meas, sim = measured_run(path), simulate_run(path)
        row: dict[str, Any] = {"run": path.stem, "system": RUN_NAME.match(path.stem).group(1)}  # type: ignore[union-attr]
        row["unsaturated"] = all(meas[k] < v for k, v in UNSATURATED.items())
        for key in (*METRICS, "slo_attainment"):
            row[f"measured_{key}"] = meas[key]
            row[f"simulated_{key}"] = sim[key]
        for key in METRICS:
            row[f"error_{key}"] = sim[key] / meas[key] - 1.0
        row["slo_points"] = 100.0 * (sim["slo_attainment"] - meas["slo_attainment"])
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'run':<26} {'TTFT P50 s':>17} {'TTFT P90 s':>17} {'TPOT P50 ms':>17} "
        f"{'TPOT P90 ms':>17} {'SLO %':>13}"
    )
    print("measured -> simulated (relative error); * = unsaturated run")
    print(head)
    for r in rows:
        cells = [f"{r['run'] + (' *' if r['unsaturated'] else ''):<26}"]
        for key, scale, fmt in (
            ("ttft_p50_s", 1, ".2f"), ("ttft_p90_s", 1, ".2f"),
            ("tpot_p50_s", 1e3, ".0f"), ("tpot_p90_s", 1e3, ".0f"),
        ):  # fmt: skip
            m, s, e = r[f"measured_{key}"], r[f"simulated_{key}"], r[f"error_{key}"]
            cells.append(f"{m * scale:>5{fmt}}->{s * scale:<5{fmt}}({e:+4.0%})".rjust(17))
        m, s = 100 * r["measured_slo_attainment"], 100 * r["simulated_slo_attainment"]
        cells.append(f"{m:3.0f}->{s:3.0f} ({r['slo_points']:+3.0f})".rjust(13))
        print(" ".join(cells))
    print()
    for system in SYSTEMS:
        mine = [r for r in rows if r["system"] == system]
        if not mine:
            continue
        calm = [r for r in mine if r["unsaturated"]]
        errs = "  ".join(
            f"{k.removesuffix('_s')} {np.median([abs(r[f'error_{k}']) for r in calm]):.1%}"
            for k in METRICS
        ) if calm else "none unsaturated"  # fmt: skip
        pts = np.abs([r["slo_points"] for r in mine])
        print(
            f"{system}: {len(mine)} runs, {len(calm)} unsaturated; median |error| over "
            f"unsaturated: {errs}; SLO attainment |error| mean {pts.mean():.1f} pts, "
            f"max {pts.max():.1f} pts"
        )
    calm = [r for r in rows if r["unsaturated"]]
    pts = np.abs([r["slo_points"] for r in rows])
    errs = "  ".join(
        f"{k.removesuffix('_s')} {np.median([abs(r[f'error_{k}']) for r in calm]):.1%}"
        for k in METRICS
    )
    print(
        f"all: {len(rows)} runs, {len(calm)} unsaturated; median |error| over unsaturated: "
        f"{errs}; SLO attainment |error| mean {pts.mean():.1f} pts, max {pts.max():.1f} pts "
        "(targets: 10% each; 5 pts mean, 15 max)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="folder of run CSVs (default: the shipped runs)")
    parser.add_argument("--json", type=Path, help="write the simulated figures here (JSON list)")
    args = parser.parse_args(argv)
    if args.data is None:
        rows = table(DATA)
        print_table(rows)
        if args.json is not None:
            out = [
                {"run": r["run"], **{k: r[f"simulated_{k}"] for k in (*METRICS, "slo_attainment")}}
                for r in rows
            ]
            args.json.write_text(json.dumps(out, indent=1))
        return 0
    paths = runs_in(args.data)
    if not paths:
        print(f"--data: no run CSVs (vllm-N-R.csv, distserve-c21d1x-N-R.csv) in {args.data}")
        return 2
    out = [simulate_run(p) for p in paths]
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1))
    else:
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
