"""How long one iteration (step) of a batched instance takes: roofline, measured profile, linear.

A step processes, for every sequence in the batch, either a chunk of its prompt (prefill) or one
new token (decode). Its cost is described by five numbers the engine passes in:

- `prefill_tokens`  P: prompt tokens processed in the step (all chunks);
- `prefill_sq`      sum over chunks of c^2 + 2 c k, for a chunk of c tokens after k tokens already
                    in the cache: the attention work of the chunk. For a whole prompt of l tokens
                    (k = 0) it is l^2, and the chunks of one prompt add up to l^2 exactly, so
                    chunking neither adds nor loses attention work;
- `prefill_ctx`     sum over chunks of k: cached tokens the chunks read back;
- `decode_seqs`     D: sequences generating one token each;
- `decode_ctx`      K: tokens already in the cache of those D sequences (read once each).

Each model is a small frozen dataclass with `step_s(...)`; pure arithmetic, no state.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Protocol

from distsim.spec.hardware import GB, TERA, GpuHardware, ModelShape

MS = 1e-3


class StepTimeModel(Protocol):
    """Anything that prices a step."""

    def step_s(
        self,
        prefill_tokens: int,
        prefill_sq: float,
        prefill_ctx: int,
        decode_seqs: int,
        decode_ctx: int,
    ) -> float: ...


@dataclass(frozen=True)
class Roofline:
    """step_overhead_s + max(compute time, memory time) + tensor-parallel communication.

    compute = 2 x params x (P + D)                      dense matmuls, 2 FLOPs per parameter
            + 4 x layers x hidden x (prefill_sq / 2 + K) attention: QK^T and AV, 2 FLOPs each per
                                                         (query, key) pair and model dimension
    bytes   = weight_bytes                              every weight read once per step
            + kv_bytes_per_token x (K + prefill_ctx)     cached KV read
            + kv_bytes_per_token x (P + D)               new KV written
    With tensor parallelism t both divide by t (weights, heads and KV are sharded), and each
    layer adds two ring all-reduces of the step's activations:
    comm = 2 x layers x (allreduce_latency_s + 2 (t-1)/t x (P + D) x hidden x bytes_per_param
           / interconnect). Activations other than KV and the final logits are left out.
    """

    model: ModelShape
    gpu: GpuHardware
    tensor_parallel: int = 1

    def step_s(
        self,
        prefill_tokens: int,
        prefill_sq: float,
        prefill_ctx: int,
        decode_seqs: int,
        decode_ctx: int,
    ) -> float:
        m, g, t = self.model, self.gpu, self.tensor_parallel
        tokens = prefill_tokens + decode_seqs
        flops = m.flops_per_token * tokens + 4.0 * m.layers * m.hidden * (
            prefill_sq / 2.0 + decode_ctx
        )
        kv = m.kv_bytes_per_token
        moved = m.weight_bytes + kv * (decode_ctx + prefill_ctx) + kv * tokens
        compute_s = flops / (t * g.peak_tflops * TERA * g.mfu)
        memory_s = moved / (t * g.hbm_gb_s * GB * g.mbu)
        comm_s = 0.0
        if t > 1:
            volume = 2.0 * (t - 1) / t * tokens * m.hidden * m.bytes_per_param
            comm_s = 2 * m.layers * (g.allreduce_latency_s + volume / (g.interconnect_gb_s * GB))
        return g.step_overhead_s + max(compute_s, memory_s) + comm_s


@dataclass(frozen=True)
class ProfileFit:
    """Measured fits of one engine at one tensor-parallel degree, in milliseconds (DistServe form).

    prefill step: a + b x P + c x prefill_sq (for whole prompts, sum of l_i^2);
    decode step of B = D sequences: a + b x K + c x B, with the `small` fit when
    B < `threshold`, else `large`.
    A mixed step (chunked prefill with decodes) was not measured; it is priced as the prefill fit
    plus the decode fit's per-token and per-sequence terms (b x K + c x B), i.e. the decode fit's
    fixed term — mostly reading the weights, which the prefill pass already does — is paid once.
    Every step adds `overhead_s + overhead_per_token_s x (P + K)`: the serving engine's CPU work
    per iteration, which the GPU-kernel profiles leave out.
    """

    prefill: tuple[float, float, float]
    decode_small: tuple[float, float, float]
    decode_large: tuple[float, float, float]
    threshold: int
    overhead_s: float = 0.0  # per iteration, on top of the fits (seconds)
    overhead_per_token_s: float = 0.0  # per iteration, per prompt and decode-context token

    def step_s(
        self,
        prefill_tokens: int,
        prefill_sq: float,
        prefill_ctx: int,
        decode_seqs: int,
        decode_ctx: int,
    ) -> float:
        ms = 0.0
        if prefill_tokens > 0:
            a, b, c = self.prefill
            ms += a + b * prefill_tokens + c * prefill_sq
        if decode_seqs > 0:
            a, b, c = self.decode_small if decode_seqs < self.threshold else self.decode_large
            ms += b * decode_ctx + c * decode_seqs
            if prefill_tokens == 0:
                ms += a
        return ms * MS + self.overhead_s + self.overhead_per_token_s * (prefill_tokens + decode_ctx)


@dataclass(frozen=True)
class Linear:
    """overhead_s + P / prefill_tokens_per_s + [D > 0] (decode_base_s + decode_per_seq_s x D +
    kv_token_s x K): for what-ifs, and to reproduce the exclusive engine with batch size 1."""

    overhead_s: float
    prefill_tokens_per_s: float
    decode_base_s: float
    decode_per_seq_s: float
    kv_token_s: float

    def step_s(
        self,
        prefill_tokens: int,
        prefill_sq: float,
        prefill_ctx: int,
        decode_seqs: int,
        decode_ctx: int,
    ) -> float:
        s = self.overhead_s + prefill_tokens / self.prefill_tokens_per_s
        if decode_seqs > 0:
            s += self.decode_base_s + self.decode_per_seq_s * decode_seqs
            s += self.kv_token_s * decode_ctx
        return s


# ---------------------------------------------------------------- shipped DistServe profiles

PROFILE_DIR = "distserve-a100-profile"
# Profile preset name -> file; both measured on A100-80GB SXM (see the data folder's README).
PROFILE_FILES = {
    "distserve": "profiler-a100-80g.distserve.json",
    "vllm": "profiler-a100-80g.vllm.json",
}
PROFILE_GPU = "a100-80gb"
# Profile preset -> (overhead_s, overhead_per_token_s) added to every step: the serving engine's
# per-iteration CPU time, which the GPU profiles leave out. Fitted once (docs/fidelity.md).
PROFILE_OVERHEAD: dict[str, tuple[float, float]] = {"distserve": (0.006, 0.0), "vllm": (0.005, 0.0)}
# Profile preset -> overhead_s of a pipeline-parallel instance (decode_pipeline_parallel > 1),
# fitted the same way on the pipelined runs: its engine keeps one micro-batch per stage in flight,
# so part of the per-iteration CPU work overlaps another micro-batch's GPU work, which the
# one-batch-at-a-time model (serving.configure) cannot show otherwise. A preset without an entry
# uses its overhead_s.
PROFILE_PIPELINE_OVERHEAD_S: dict[str, float] = {"distserve": 0.002}
# distsim model preset -> the profile's model key.
PROFILE_MODELS = {"opt-13b": "facebook/opt-13b", "opt-66b": "facebook/opt-66b"}


def _data(name: str) -> str:
    return resources.files("distsim").joinpath("data", PROFILE_DIR, name).read_text("utf-8")


def fit_from_mapping(entry: dict) -> ProfileFit:
    """A `ProfileFit` from the DistServe JSON form of one tensor-parallel degree."""
    return ProfileFit(
        prefill=tuple(float(x) for x in entry["prefill"]),  # type: ignore[arg-type]
        decode_small=tuple(float(x) for x in entry["decoding_smallbs"]),  # type: ignore[arg-type]
        decode_large=tuple(float(x) for x in entry["decoding_largebs"]),  # type: ignore[arg-type]
        threshold=int(entry["decoding_large_small_bs_threshold"]),
    )


@cache
def profile_table(preset: str) -> dict[str, dict[int, ProfileFit]]:
    """distsim model preset -> tensor-parallel degree -> fit, for one shipped profile."""
    raw = json.loads(_data(PROFILE_FILES[preset]))
    by_key = {v: k for k, v in PROFILE_MODELS.items()}
    return {
        by_key[model]: {int(tp): fit_from_mapping(entry) for tp, entry in per_tp.items()}
        for model, per_tp in raw.items()
        if model in by_key
    }


@cache
def profile_kv_capacity(pipeline_parallel: int = 1) -> dict[tuple[str, int], int]:
    """(distsim model preset, tensor parallel) -> KV capacity in tokens of one instance of
    `pipeline_parallel` stages (all its GPUs together)."""
    by_key = {v: k for k, v in PROFILE_MODELS.items()}
    out: dict[tuple[str, int], int] = {}
    for row in csv.DictReader(_data("max_num_tokens.csv").splitlines()):
        if row["model"] in by_key and int(row["pp"]) == pipeline_parallel:
            out[(by_key[row["model"]], int(row["tp"]))] = int(row["max_num_tokens"])
    return out
