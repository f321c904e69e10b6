"""Model and GPU figures: presets with their public sources, and what follows from them.

A transformer's serving cost is set by a handful of numbers: how many parameters it reads per
step, how many bytes of KV cache one token holds, and how fast a GPU computes and reads memory.
This module holds those numbers (as presets a spec names, or explicit values) and the pure
arithmetic on them: KV bytes per token, weight bytes, KV capacity of an instance and the
token rates the exclusive engine uses when a spec names hardware instead of rates.

Every preset figure carries the public document it comes from (`MODEL_SOURCES`, `GPU_SOURCES`,
and for the default price and rated power of each GPU, `GPU_ECONOMICS`). Efficiency factors
(`mfu`, `mbu`), per-step overhead and all-reduce latency are *assumptions*, not datasheet
figures; they are marked as such and a spec may override them, as it may the price and power.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

GB = 1e9  # decimal gigabytes, as datasheets quote HBM capacity and bandwidth
TERA = 1e12


@dataclass(frozen=True)
class ModelShape:
    """A decoder-only transformer, as far as serving cost goes.

    A mixture-of-experts model gives `active_params_b`, the parameters one token passes through
    (shared layers plus its routed experts): the roofline's compute uses those, while memory
    (weights held and read per step) uses all `params_b`. Dense models leave it None.
    """

    params_b: float  # parameters, billions (all experts of a mixture-of-experts model)
    layers: int
    kv_heads: int  # key/value heads (== attention heads without grouped-query attention)
    head_dim: int
    hidden: int  # model width; query heads x head_dim
    bytes_per_param: float = 2.0  # fp16/bf16 weights; the KV cache uses the same width
    active_params_b: float | None = None  # mixture of experts: parameters used per token

    @property
    def weight_bytes(self) -> float:
        return self.params_b * 1e9 * self.bytes_per_param

    @property
    def kv_bytes_per_token(self) -> float:
        """Key and value vectors of one token in every layer: 2 x layers x kv_heads x head_dim."""
        return 2.0 * self.layers * self.kv_heads * self.head_dim * self.bytes_per_param

    @property
    def flops_per_token(self) -> float:
        """Matmul work of one token: 2 FLOPs (multiply + add) per parameter it passes through
        (the active parameters of a mixture-of-experts model)."""
        active = self.params_b if self.active_params_b is None else self.active_params_b
        return 2.0 * active * 1e9


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
    # Llama 3.1 8B: same architecture as Llama 3 8B (32 layers, 8 KV heads, d_model 4096), 8.03e9
    # parameters — Dubey et al. 2024, "The Llama 3 Herd of Models", Table 3 (July 2024), and
    # meta-llama/Llama-3.1-8B config.json.
    "llama-3.1-8b": ModelShape(params_b=8.03, layers=32, kv_heads=8, head_dim=128, hidden=4096),
    # Llama 3.1 70B: 80 layers, 64 query / 8 KV heads, d_model 8192, 70.6e9 parameters — same
    # paper, Table 3, and meta-llama/Llama-3.1-70B config.json (July 2024).
    "llama-3.1-70b": ModelShape(params_b=70.6, layers=80, kv_heads=8, head_dim=128, hidden=8192),
    # Llama 3.1 405B: 126 layers, 128 query / 8 KV heads, d_model 16384, FFN 53248 — same paper,
    # Table 3 (July 2024); 405.85e9 parameters counted from those shapes (vocabulary 128,256,
    # untied embeddings), which the model card rounds to 405B.
    "llama-3.1-405b": ModelShape(
        params_b=405.85, layers=126, kv_heads=8, head_dim=128, hidden=16384
    ),
    # Qwen2.5 7B: 28 layers, 28 query / 4 KV heads, d_model 3584, 7.61e9 parameters — Qwen team
    # 2024, "Qwen2.5 Technical Report" (arXiv 2412.15115, December 2024), Table 1, and the
    # Qwen/Qwen2.5-7B model card (September 2024).
    "qwen2.5-7b": ModelShape(params_b=7.61, layers=28, kv_heads=4, head_dim=128, hidden=3584),
    # Qwen2.5 72B: 80 layers, 64 query / 8 KV heads, d_model 8192, 72.7e9 parameters — same report,
    # Table 1, and the Qwen/Qwen2.5-72B model card (September 2024).
    "qwen2.5-72b": ModelShape(params_b=72.7, layers=80, kv_heads=8, head_dim=128, hidden=8192),
    # Mistral 7B: 32 layers, 32 query / 8 KV heads, d_model 4096, head_dim 128 — Jiang et al. 2023,
    # "Mistral 7B" (arXiv 2310.06825, October 2023), Table 1; 7.24e9 parameters
    # (mistralai/Mistral-7B-v0.1 checkpoint).
    "mistral-7b": ModelShape(params_b=7.24, layers=32, kv_heads=8, head_dim=128, hidden=4096),
    # Mixtral 8x7B: Mistral 7B's attention (32 layers, 8 KV heads, d_model 4096) with 8 experts per
    # layer, 2 used per token: 46.7e9 parameters in all, 12.9e9 active per token — Jiang et al.
    # 2024, "Mixtral of Experts" (arXiv 2401.04088, January 2024), Table 1 and section 2, and
    # Mistral AI's announcement "Mixtral of experts" (11 December 2023).
    "mixtral-8x7b": ModelShape(
        params_b=46.7, layers=32, kv_heads=8, head_dim=128, hidden=4096, active_params_b=12.9
    ),
}

# Where each model preset's figures come from (the comment above each entry says it in full).
MODEL_SOURCES: dict[str, str] = {
    "opt-13b": "Zhang et al. 2022, OPT paper, Table 1 (May 2022); facebook/opt-13b",
    "opt-66b": "Zhang et al. 2022, OPT paper, Table 1 (May 2022); facebook/opt-66b",
    "llama-2-7b": "Touvron et al. 2023, Llama 2 paper, Table 1 (July 2023); meta-llama/Llama-2-7b",
    "llama-2-13b": "Touvron et al. 2023, Llama 2 paper, Table 1 (July 2023)",
    "llama-3-8b": "meta-llama/Meta-Llama-3-8B config.json and model card (April 2024)",
    "llama-3-70b": "meta-llama/Meta-Llama-3-70B config.json and model card (April 2024)",
    "llama-3.1-8b": "Dubey et al. 2024, The Llama 3 Herd of Models, Table 3 (July 2024)",
    "llama-3.1-70b": "Dubey et al. 2024, The Llama 3 Herd of Models, Table 3 (July 2024)",
    "llama-3.1-405b": "Dubey et al. 2024, The Llama 3 Herd of Models, Table 3 (July 2024)",
    "qwen2.5-7b": "Qwen2.5 Technical Report, arXiv 2412.15115, Table 1 (December 2024)",
    "qwen2.5-72b": "Qwen2.5 Technical Report, arXiv 2412.15115, Table 1 (December 2024)",
    "mistral-7b": "Jiang et al. 2023, Mistral 7B, arXiv 2310.06825, Table 1 (October 2023)",
    "mixtral-8x7b": "Jiang et al. 2024, Mixtral of Experts, arXiv 2401.04088 (January 2024)",
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
# DistServe profile of OPT-13B on A100-80GB (docs/serving-model.md states the remaining error);
# the same factors are assumed on the other GPUs. A spec overrides any of them.
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
    # NVIDIA A100 40GB SXM — the same A100 datasheet: 312 TFLOPS dense BF16/FP16, 40 GB HBM2 at
    # 1,555 GB/s, NVLink 600 GB/s.
    "a100-40gb": GpuHardware(
        peak_tflops=312.0, hbm_gb=40.0, hbm_gb_s=1555.0, mfu=_MFU, mbu=_MBU,
        step_overhead_s=_STEP_OVERHEAD_S, interconnect_gb_s=600.0,
        allreduce_latency_s=_ALLREDUCE_LATENCY_S,
    ),
    # NVIDIA H200 SXM — "NVIDIA H200 Tensor Core GPU" datasheet (November 2023): BF16/FP16 tensor
    # 989 TFLOPS dense (1,979 with sparsity; the H100's compute), 141 GB HBM3e at 4.8 TB/s,
    # NVLink 900 GB/s.
    "h200": GpuHardware(
        peak_tflops=989.0, hbm_gb=141.0, hbm_gb_s=4800.0, mfu=_MFU, mbu=_MBU,
        step_overhead_s=_STEP_OVERHEAD_S, interconnect_gb_s=900.0,
        allreduce_latency_s=_ALLREDUCE_LATENCY_S,
    ),
    # NVIDIA B200 (HGX B200, 1,000 W configuration) — NVIDIA HGX B200 / DGX B200 datasheets
    # (2024): FP16/BF16 tensor 2,250 TFLOPS dense per GPU (4.5 PFLOPS with sparsity; 36 PFLOPS
    # per 8-GPU board), 180 GB HBM3e per GPU (1,440 GB per board) at 8 TB/s (64 TB/s per board),
    # NVLink 5 at 1.8 TB/s.
    "b200": GpuHardware(
        peak_tflops=2250.0, hbm_gb=180.0, hbm_gb_s=8000.0, mfu=_MFU, mbu=_MBU,
        step_overhead_s=_STEP_OVERHEAD_S, interconnect_gb_s=1800.0,
        allreduce_latency_s=_ALLREDUCE_LATENCY_S,
    ),
    # NVIDIA L4 — "NVIDIA L4 Tensor Core GPU" datasheet (March 2023): FP16/BF16 tensor 121 TFLOPS
    # dense (242 with sparsity), 24 GB GDDR6 at 300 GB/s; no NVLink, PCIe Gen4 x16 at 64 GB/s.
    "l4": GpuHardware(
        peak_tflops=121.0, hbm_gb=24.0, hbm_gb_s=300.0, mfu=_MFU, mbu=_MBU,
        step_overhead_s=_STEP_OVERHEAD_S, interconnect_gb_s=64.0,
        allreduce_latency_s=_ALLREDUCE_LATENCY_S,
    ),
    # AMD Instinct MI300X (OAM) — AMD "Instinct MI300X Accelerator" data sheet (December 2023):
    # FP16/BF16 matrix 1,307.4 TFLOPS dense (2,614.9 with sparsity), 192 GB HBM3 at 5.3 TB/s,
    # Infinity Fabric links 896 GB/s peak aggregate.
    "mi300x": GpuHardware(
        peak_tflops=1307.4, hbm_gb=192.0, hbm_gb_s=5300.0, mfu=_MFU, mbu=_MBU,
        step_overhead_s=_STEP_OVERHEAD_S, interconnect_gb_s=896.0,
        allreduce_latency_s=_ALLREDUCE_LATENCY_S,
    ),
}  # fmt: skip

# Where each GPU preset's hardware figures come from (the comment above each entry in full).
GPU_SOURCES: dict[str, str] = {
    "a100-80gb": "NVIDIA A100 Tensor Core GPU datasheet (2021 edition, 80GB SXM column)",
    "h100-sxm": "NVIDIA H100 Tensor Core GPU datasheet (2023, SXM column)",
    "l40s": "NVIDIA L40S GPU datasheet (2023)",
    "a100-40gb": "NVIDIA A100 Tensor Core GPU datasheet (2021 edition, 40GB SXM column)",
    "h200": "NVIDIA H200 Tensor Core GPU datasheet (November 2023, SXM column)",
    "b200": "NVIDIA HGX B200 and DGX B200 datasheets (2024), per GPU at 1,000 W",
    "l4": "NVIDIA L4 Tensor Core GPU datasheet (March 2023)",
    "mi300x": "AMD Instinct MI300X Accelerator data sheet (December 2023)",
}


@dataclass(frozen=True)
class GpuEconomics:
    """What one GPU costs to rent and the power it is rated for: defaults a study may override.

    `usd_per_hour` is an on-demand cloud price per GPU-hour (it moves month to month and differs
    between providers: set your own); `power_w` the board's rated maximum (TDP/TBP), so energy
    figures are an upper bound at full power, not a measurement.
    """

    usd_per_hour: float
    power_w: float
    price_source: str
    power_source: str


# Prices: RunPod's Serverless price list (docs.runpod.io/serverless/pricing), the "active worker"
# (always-on) per-second rate x 3600, read 2026-11-29; one provider so the ratios are comparable.
# It lists no A100 40GB and no MI300X: those two come from the sources named in their entries.
_RUNPOD = "RunPod Serverless active-worker rate, docs.runpod.io/serverless/pricing, read 2026-11-29"
GPU_ECONOMICS: dict[str, GpuEconomics] = {
    "a100-80gb": GpuEconomics(
        usd_per_hour=2.16, power_w=400.0, price_source=f"{_RUNPOD} ($0.00060/s)",
        power_source="NVIDIA A100 datasheet (2021): 400 W max TDP, SXM",
    ),
    "h100-sxm": GpuEconomics(
        usd_per_hour=3.348, power_w=700.0, price_source=f"{_RUNPOD} (H100 PRO, $0.00093/s)",
        power_source="NVIDIA H100 datasheet (2023): up to 700 W, SXM",
    ),
    "l40s": GpuEconomics(
        usd_per_hour=1.332, power_w=350.0, price_source=f"{_RUNPOD} (L40/L40S, $0.00037/s)",
        power_source="NVIDIA L40S datasheet (2023): 350 W max power",
    ),
    "a100-40gb": GpuEconomics(
        usd_per_hour=1.25, power_w=400.0,
        price_source="RunPod community-cloud A100 40GB rate as quoted by theneuralbase.com "
        "'RunPod: pricing per GB' (2025), read 2026-11-29",
        power_source="NVIDIA A100 datasheet (2021): 400 W max TDP, SXM",
    ),
    "h200": GpuEconomics(
        usd_per_hour=4.464, power_w=700.0, price_source=f"{_RUNPOD} (H200 PRO, $0.00124/s)",
        power_source="NVIDIA H200 datasheet (November 2023): up to 700 W, SXM",
    ),
    "b200": GpuEconomics(
        usd_per_hour=6.84, power_w=1000.0, price_source=f"{_RUNPOD} ($0.00190/s)",
        power_source="NVIDIA HGX B200 datasheet (2024): 1,000 W per GPU",
    ),
    "l4": GpuEconomics(
        usd_per_hour=0.468, power_w=72.0, price_source=f"{_RUNPOD} (L4/A5000/3090, $0.00013/s)",
        power_source="NVIDIA L4 datasheet (March 2023): 72 W max power",
    ),
    "mi300x": GpuEconomics(
        usd_per_hour=1.85, power_w=750.0,
        price_source="Vultr on-demand MI300X rate as listed by gpu.blog (January 2025) and "
        "cliffcenter.com 'AMD inference economics' (May 2026), read 2026-11-29",
        power_source="AMD Instinct MI300X data sheet (December 2023): 750 W peak board power",
    ),
}  # fmt: skip


def with_overrides(base: ModelShape | GpuHardware, **fields: float | int | None):  # noqa: ANN201
    """`base` with every non-None field replaced (explicit spec values win over a preset)."""
    return replace(base, **{k: v for k, v in fields.items() if v is not None})


def kv_capacity_tokens(
    model: ModelShape,
    gpu: GpuHardware,
    tensor_parallel: int,
    memory_fraction: float,
    reserved_gb: float = 0.0,
) -> int:
    """Tokens of KV cache one instance of `tensor_parallel` GPUs holds.

    The usable memory (`memory_fraction` of all HBM of the instance, less `reserved_gb` per GPU
    kept for activations) holds the weights once (sharded across the GPUs) and the KV cache in
    the rest: floor((tp x (hbm_gb x memory_fraction - reserved_gb) x 1e9 - weight_bytes) /
    kv_bytes_per_token). Negative when the weights alone do not fit.
    """
    usable = tensor_parallel * (gpu.hbm_gb * memory_fraction - reserved_gb) * GB
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
