"""Model and GPU figures: presets with their public sources, and what follows from them.

A transformer's serving cost is set by a handful of numbers: how many parameters it reads per
step, how many bytes of KV cache one token holds, and how fast a GPU computes and reads memory.
This module holds those numbers (as presets a spec names, or explicit values) and the pure
arithmetic on them: KV bytes per token, weight bytes, KV capacity of an instance and the
token rates the exclusive engine uses when a spec names hardware instead of rates.

Every preset figure carries the public document it comes from. Efficiency factors (`mfu`, `mbu`),
per-step overhead and all-reduce latency are *assumptions*, not datasheet figures; they are
marked as such and a spec may override them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

GB = 1e9  # decimal gigabytes, as datasheets quote HBM capacity and bandwidth
TERA = 1e12


@dataclass(frozen=True)
class ModelShape:
    """A dense decoder-only transformer, as far as serving cost goes."""

    params_b: float  # parameters, billions
    layers: int
    kv_heads: int  # key/value heads (== attention heads without grouped-query attention)
    head_dim: int
    hidden: int  # model width; query heads x head_dim
    bytes_per_param: float = 2.0  # fp16/bf16 weights; the KV cache uses the same width

    @property
    def weight_bytes(self) -> float:
        return self.params_b * 1e9 * self.bytes_per_param

    @property
    def kv_bytes_per_token(self) -> float:
        """Key and value vectors of one token in every layer: 2 x layers x kv_heads x head_dim."""
        return 2.0 * self.layers * self.kv_heads * self.head_dim * self.bytes_per_param

    @property
    def flops_per_token(self) -> float:
        """Dense matmul work of one token: 2 FLOPs (multiply + add) per parameter."""
        return 2.0 * self.params_b * 1e9


# Architecture figures are those of each model's published configuration (the config.json of the
# public checkpoint, which the papers' tables match); parameter counts as the papers/model cards
# state them. All have head_dim 128.
MODEL_PRESETS: dict[str, ModelShape] = {
    # OPT-13B: 40 layers, 40 heads, d_model 5120 — Zhang et al. 2022, "OPT: Open Pre-trained
    # Transformer Language Models", Table 1; 12.85e9 parameters (facebook/opt-13b checkpoint).
    "opt-13b": ModelShape(params_b=12.85, layers=40, kv_heads=40, head_dim=128, hidden=5120),
    # OPT-66B: 64 layers, 72 heads, d_model 9216 — OPT paper, Table 1; 65.7e9 parameters.
    "opt-66b": ModelShape(params_b=65.7, layers=64, kv_heads=72, head_dim=128, hidden=9216),
    # Llama 2 7B: 32 layers, 32 heads (no GQA), d_model 4096, 6.74e9 parameters — Touvron et al.
    # 2023, "Llama 2: Open Foundation and Fine-Tuned Chat Models", Table 1 / meta-llama/Llama-2-7b.
    "llama-2-7b": ModelShape(params_b=6.74, layers=32, kv_heads=32, head_dim=128, hidden=4096),
    # Llama 2 13B: 40 layers, 40 heads (no GQA), d_model 5120, 13.0e9 parameters — same sources.
    "llama-2-13b": ModelShape(params_b=13.0, layers=40, kv_heads=40, head_dim=128, hidden=5120),
    # Llama 3 8B: 32 layers, 32 query / 8 KV heads (GQA), d_model 4096, 8.03e9 parameters —
    # meta-llama/Meta-Llama-3-8B config.json and model card (Meta, April 2024).
    "llama-3-8b": ModelShape(params_b=8.03, layers=32, kv_heads=8, head_dim=128, hidden=4096),
    # Llama 3 70B: 80 layers, 64 query / 8 KV heads (GQA), d_model 8192, 70.6e9 parameters —
    # meta-llama/Meta-Llama-3-70B config.json and model card.
    "llama-3-70b": ModelShape(params_b=70.6, layers=80, kv_heads=8, head_dim=128, hidden=8192),
}


@dataclass(frozen=True)
class GpuHardware:
    """One GPU: peak dense FP16/BF16 tensor throughput, memory, and how well software uses it."""

    peak_tflops: float  # dense (no sparsity) FP16/BF16 tensor-core TFLOP/s
    hbm_gb: float  # device memory, GB
    hbm_gb_s: float  # memory bandwidth, GB/s
    mfu: float  # achieved fraction of peak_tflops in a compute-bound step (assumption)
    mbu: float  # achieved fraction of hbm_gb_s in a memory-bound step (assumption)
    step_overhead_s: float  # fixed cost per iteration: scheduling, kernel launches (assumption)
    interconnect_gb_s: float  # GPU-to-GPU bandwidth used by tensor-parallel all-reduces, GB/s
    allreduce_latency_s: float  # fixed cost of one all-reduce (assumption)


# Efficiency assumptions shared by the presets: set so that the roofline lands near the measured
# DistServe profile of OPT-13B on A100-80GB (the README states the remaining error); the same
# factors are assumed on the other GPUs. A spec overrides any of them.
_MFU = 0.7
_MBU = 0.7
_STEP_OVERHEAD_S = 0.004
_ALLREDUCE_LATENCY_S = 10e-6

GPU_PRESETS: dict[str, GpuHardware] = {
    # NVIDIA A100 80GB SXM — "NVIDIA A100 Tensor Core GPU" datasheet: BF16/FP16 tensor 312 TFLOPS
    # dense (624 with sparsity), 80 GB HBM2e at 2,039 GB/s, NVLink 600 GB/s.
    "a100-80gb": GpuHardware(
        peak_tflops=312.0, hbm_gb=80.0, hbm_gb_s=2039.0, mfu=_MFU, mbu=_MBU,
        step_overhead_s=_STEP_OVERHEAD_S, interconnect_gb_s=600.0,
        allreduce_latency_s=_ALLREDUCE_LATENCY_S,
    ),
    # NVIDIA H100 SXM5 80GB — "NVIDIA H100 Tensor Core GPU" datasheet: BF16/FP16 tensor 989
    # TFLOPS dense (1,979 with sparsity), 80 GB HBM3 at 3.35 TB/s, NVLink 900 GB/s.
    "h100-sxm": GpuHardware(
        peak_tflops=989.0, hbm_gb=80.0, hbm_gb_s=3350.0, mfu=_MFU, mbu=_MBU,
        step_overhead_s=_STEP_OVERHEAD_S, interconnect_gb_s=900.0,
        allreduce_latency_s=_ALLREDUCE_LATENCY_S,
    ),
    # NVIDIA L40S — "NVIDIA L40S GPU" datasheet: BF16/FP16 tensor 362.05 TFLOPS dense (733 with
    # sparsity), 48 GB GDDR6 at 864 GB/s; no NVLink, PCIe Gen4 x16 at 64 GB/s.
    "l40s": GpuHardware(
        peak_tflops=362.05, hbm_gb=48.0, hbm_gb_s=864.0, mfu=_MFU, mbu=_MBU,
        step_overhead_s=_STEP_OVERHEAD_S, interconnect_gb_s=64.0,
        allreduce_latency_s=_ALLREDUCE_LATENCY_S,
    ),
}  # fmt: skip


def with_overrides(base: ModelShape | GpuHardware, **fields: float | int | None):  # noqa: ANN201
    """`base` with every non-None field replaced (explicit spec values win over a preset)."""
    return replace(base, **{k: v for k, v in fields.items() if v is not None})


def kv_capacity_tokens(
    model: ModelShape, gpu: GpuHardware, tensor_parallel: int, memory_fraction: float
) -> int:
    """Tokens of KV cache one instance of `tensor_parallel` GPUs holds.

    The usable memory (`memory_fraction` of all HBM of the instance) holds the weights once
    (sharded across the GPUs) and the KV cache in the rest:
    floor((tp x hbm_gb x 1e9 x memory_fraction - weight_bytes) / kv_bytes_per_token).
    Negative when the weights alone do not fit.
    """
    usable = tensor_parallel * gpu.hbm_gb * GB * memory_fraction
    return int((usable - model.weight_bytes) // model.kv_bytes_per_token)


@dataclass(frozen=True)
class ExclusiveRates:
    """Token rates of one GPU in the exclusive (seed) engine."""

    prefill_tokens_per_s: float
    decode_tokens_per_s: float


def exclusive_rates(model: ModelShape, gpu: GpuHardware) -> ExclusiveRates:
    """The exclusive engine's rates implied by the roofline on one GPU.

    Prefill: the compute-bound throughput peak x mfu / (2 x params) tokens/s (attention and the
    per-step overhead, which a long prompt amortises, are left out). Decode: one token per
    single-sequence step, which reads every weight once: 1 / (step_overhead_s + weight_bytes /
    (hbm_gb_s x mbu)). A model larger than one GPU's memory still gets rates: the exclusive engine
    has no memory model.
    """
    prefill = gpu.peak_tflops * TERA * gpu.mfu / model.flops_per_token
    decode_step_s = gpu.step_overhead_s + model.weight_bytes / (gpu.hbm_gb_s * GB * gpu.mbu)
    return ExclusiveRates(prefill_tokens_per_s=prefill, decode_tokens_per_s=1.0 / decode_step_s)
