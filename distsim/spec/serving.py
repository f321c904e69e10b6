"""Spec sections of the serving model: `model`, `gpu`, `step_time`, `slo`, `goodput`, and the
batched-engine fields of the two architectures.

    engine: batched                       # or exclusive (default: the seed's model)
    model: {preset: opt-13b}              # or params_b, layers, kv_heads, head_dim, hidden
    gpu: {preset: a100-80gb}              # or peak_tflops, hbm_gb, hbm_gb_s (+ efficiencies)
    step_time: {model: profile, preset: distserve}   # roofline (default) | profile | linear
    slo: {ttft_s: 0.4, tpot_s: 0.04}
    architectures:
      monolithic: {kind: monolithic, gpus: 2, tensor_parallel: 1, max_batch_size: 256}
      disaggregated: {kind: disaggregated, prefill_gpus: 1, decode_gpus: 1, kv_link_gb_s: 25}

Explicit fields win over a preset's (`gpu: {preset: a100-80gb, mfu: 0.5}`). The exclusive
engine's `gpu.prefill_tokens_per_s` / `decode_tokens_per_s` keep working; without them the
rates are derived from `model` and the GPU hardware (see `distsim.spec.hardware.exclusive_rates`).
What each engine needs beyond these fields (token rates, a step model, KV capacity) is checked by
`distsim.sim.serving.check`, which the study runner's plan calls for every scenario.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import Field, model_validator

from distsim.spec.base import (
    BoundedCount,
    BoundedPositiveFloat,
    BoundedSeconds,
    Fraction,
    NonNegativeFloat,
    ParallelDegree,
    StrictModel,
)
from distsim.spec.hardware import (
    GPU_ECONOMICS,
    GPU_PRESETS,
    MODEL_PRESETS,
    GpuHardware,
    ModelShape,
    with_overrides,
)

ModelPreset = Literal[
    "opt-13b", "opt-66b", "llama-2-7b", "llama-2-13b", "llama-3-8b", "llama-3-70b",
    "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "qwen2.5-7b", "qwen2.5-72b",
    "mistral-7b", "mixtral-8x7b",
]  # fmt: skip
GpuPreset = Literal["a100-80gb", "a100-40gb", "h100-sxm", "h200", "b200", "l40s", "l4", "mi300x"]
assert set(ModelPreset.__args__) == set(MODEL_PRESETS)  # type: ignore[attr-defined]
assert set(GpuPreset.__args__) == set(GPU_PRESETS) == set(GPU_ECONOMICS)  # type: ignore[attr-defined]


class ModelSpec(StrictModel):
    """The served model: a preset, explicit shape fields, or a preset with fields overridden."""

    preset: ModelPreset | None = Field(
        None, description="A shipped model; explicit fields below override its figures."
    )
    params_b: BoundedPositiveFloat | None = Field(None, description="Parameters, in billions.")
    layers: BoundedCount | None = Field(None, description="Transformer layers.")
    kv_heads: BoundedCount | None = Field(
        None, description="Key/value heads (fewer than query heads with grouped-query attention)."
    )
    head_dim: BoundedCount | None = Field(None, description="Width of one attention head.")
    hidden: BoundedCount | None = Field(None, description="Model width (query heads x head_dim).")
    bytes_per_param: Annotated[float, Field(gt=0, le=8)] | None = Field(
        None, description="Bytes per weight and per KV-cache element (default 2: fp16/bf16)."
    )
    active_params_b: BoundedPositiveFloat | None = Field(
        None,
        description="Mixture of experts: parameters (billions) one token passes through; the "
        "roofline computes with these and reads all params_b. Dense models leave it out.",
    )

    @model_validator(mode="after")
    def _complete(self) -> ModelSpec:
        if self.preset is None:
            missing = [
                f for f in ("params_b", "layers", "kv_heads", "head_dim", "hidden")
                if getattr(self, f) is None
            ]  # fmt: skip
            if missing:
                raise ValueError(
                    f"give a preset or all shape fields (missing: {', '.join(missing)})"
                )
        shape = self.shape()
        if shape.active_params_b is not None and shape.active_params_b > shape.params_b:
            raise ValueError(
                f"active_params_b ({shape.active_params_b:g}) exceeds params_b "
                f"({shape.params_b:g}): a token cannot use more parameters than the model has"
            )
        return self

    def shape(self) -> ModelShape:
        fields = self.model_dump(exclude={"preset"})
        if self.preset is not None:
            return with_overrides(MODEL_PRESETS[self.preset], **fields)
        return ModelShape(**{k: v for k, v in fields.items() if v is not None})


RATES_ONLY = "GPU at given token rates"  # how reports name a GPU given by its rates alone
_HARDWARE_ASSUMPTIONS = GPU_PRESETS["a100-80gb"]  # efficiencies used when no preset is named


class Gpu(StrictModel):
    """One GPU: a hardware preset or fields, and/or the exclusive engine's token rates."""

    preset: GpuPreset | None = Field(
        None, description="A shipped GPU; explicit fields below override its figures."
    )
    peak_tflops: BoundedPositiveFloat | None = Field(
        None, description="Dense BF16/FP16 peak, TFLOPS."
    )
    hbm_gb: BoundedPositiveFloat | None = Field(None, description="Memory capacity, GB.")
    hbm_gb_s: BoundedPositiveFloat | None = Field(None, description="Memory bandwidth, GB/s.")
    mfu: Fraction | None = Field(
        None, description="Share of peak FLOPS a step achieves (an assumption; preset 0.7)."
    )
    mbu: Fraction | None = Field(
        None, description="Share of memory bandwidth a step achieves (an assumption; preset 0.7)."
    )
    step_overhead_s: BoundedSeconds | None = Field(
        None, description="Fixed time per step: scheduling and kernel launches (preset 4 ms)."
    )
    interconnect_gb_s: BoundedPositiveFloat | None = Field(
        None, description="GPU-to-GPU bandwidth for tensor-parallel all-reduces, GB/s."
    )
    allreduce_latency_s: BoundedSeconds | None = Field(
        None, description="Latency of one all-reduce (preset 10 us)."
    )
    memory_fraction: Fraction = Field(
        0.9, description="Share of HBM for weights and KV cache (the rest holds activations)."
    )
    prefill_tokens_per_s: BoundedPositiveFloat | None = Field(
        None,
        description="Exclusive engine: prompt tokens per second of one GPU "
        "(derived from model and hardware when absent).",
    )
    decode_tokens_per_s: BoundedPositiveFloat | None = Field(
        None,
        description="Exclusive engine: output tokens per second of one GPU, one sequence "
        "(give both rates or neither).",
    )
    usd_per_hour: Annotated[float, Field(ge=0, le=1e6)] | None = Field(
        None,
        description="Price of one GPU per hour in US dollars (default: the preset's documented "
        "on-demand price; none without a preset). Sets cost_usd_per_hour and goodput per dollar.",
    )
    power_w: Annotated[float, Field(gt=0, le=1e6)] | None = Field(
        None,
        description="Rated power of one GPU in watts (default: the preset's TDP). Sets the "
        "energy figures (goodput_requests_per_kwh), an upper bound at full power.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Gpu:
        if (self.prefill_tokens_per_s is None) != (self.decode_tokens_per_s is None):
            raise ValueError("give both prefill_tokens_per_s and decode_tokens_per_s, or neither")
        if self.preset is None:
            core = [self.peak_tflops, self.hbm_gb, self.hbm_gb_s]
            if any(v is not None for v in core) and any(v is None for v in core):
                raise ValueError("hardware without a preset needs peak_tflops, hbm_gb and hbm_gb_s")
            extras = ("mfu", "mbu", "step_overhead_s", "interconnect_gb_s", "allreduce_latency_s")
            if all(v is None for v in core) and any(getattr(self, f) is not None for f in extras):
                raise ValueError("efficiency fields need a preset or peak_tflops, hbm_gb, hbm_gb_s")
        return self

    def hardware(self) -> GpuHardware | None:
        """The GPU's hardware figures, or None when the spec gives token rates only."""
        fields = self.model_dump(
            exclude={
                "preset", "memory_fraction", "prefill_tokens_per_s", "decode_tokens_per_s",
                "usd_per_hour", "power_w",
            }
        )  # fmt: skip
        if self.preset is not None:
            return with_overrides(GPU_PRESETS[self.preset], **fields)
        if self.peak_tflops is None:
            return None
        return with_overrides(_HARDWARE_ASSUMPTIONS, **fields)

    def usd_per_hour_resolved(self) -> float | None:
        """Price per GPU-hour: the spec's, else the preset's default, else None (unknown)."""
        if self.usd_per_hour is not None:
            return self.usd_per_hour
        return GPU_ECONOMICS[self.preset].usd_per_hour if self.preset is not None else None

    def power_w_resolved(self) -> float | None:
        """Rated power per GPU: the spec's, else the preset's default, else None (unknown)."""
        if self.power_w is not None:
            return self.power_w
        return GPU_ECONOMICS[self.preset].power_w if self.preset is not None else None

    def label(self) -> str:
        """How reports name this GPU: the preset, 'custom hardware', or the token rates."""
        if self.preset is not None:
            return self.preset
        if self.peak_tflops is not None:
            return "custom hardware"
        return RATES_ONLY


# ---------------------------------------------------------------- step-time models


class RooflineStepTime(StrictModel):
    """Compute/memory roofline from `model` and `gpu` (see `distsim.sim.step_time.Roofline`)."""

    model: Literal["roofline"] = Field(description="Selects the roofline model.")


Triple = tuple[float, float, float]


class ProfileCoefficients(StrictModel):
    """One tensor-parallel degree of a measured profile, DistServe's JSON form, milliseconds."""

    prefill: Triple = Field(
        description="Prefill step, ms: [a, b, c] in a + b x prompt tokens + c x sum of squared "
        "prompt lengths."
    )
    decoding_smallbs: Triple = Field(
        description="Decode step of B sequences reading K cached tokens, ms: [a, b, c] in "
        "a + b x K + c x B, for B below the threshold."
    )
    decoding_largebs: Triple = Field(
        description="The same decode fit for B at or above the threshold."
    )
    decoding_large_small_bs_threshold: BoundedCount = Field(
        description="Batch size at which the large-batch decode fit takes over."
    )


class ProfileStepTime(StrictModel):
    """Measured step-time fits: a shipped preset (A100-80GB, OPT-13B/66B) or your own.

    `coefficients` maps tensor-parallel degree -> fits; every pool's degree must be present.
    """

    model: Literal["profile"] = Field(description="Selects measured step-time fits.")
    preset: Literal["distserve", "vllm"] | None = Field(
        None, description="DistServe's A100-80GB measurements of its own or vLLM's engine."
    )
    coefficients: dict[ParallelDegree, ProfileCoefficients] | None = Field(
        None, description="Your own fits, by tensor-parallel degree (instead of a preset)."
    )
    overhead_s: BoundedSeconds | None = Field(
        None,
        description="CPU time every iteration adds to the fit (scheduling, sampling, "
        "detokenising), seconds (absent: the preset's fitted value, and for a "
        "pipeline-parallel decode instance the preset's pipelined value; 0 with coefficients).",
    )
    overhead_per_token_s: BoundedSeconds | None = Field(
        None,
        description="Further per-iteration time per prompt token and per cached context token "
        "of the decodes, seconds (absent: the preset's fitted value, 0 with coefficients).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ProfileStepTime:
        if (self.preset is None) == (self.coefficients is None):
            raise ValueError("give exactly one of preset and coefficients")
        if self.coefficients is not None and not self.coefficients:
            raise ValueError("coefficients: needs at least one tensor-parallel degree")
        return self


class LinearStepTime(StrictModel):
    """overhead_s + P/prefill_tokens_per_s + [D>0](decode_base_s + decode_per_seq_s*D +
    kv_token_s*K); the same for every tensor-parallel degree."""

    model: Literal["linear"] = Field(description="Selects the linear model.")
    overhead_s: BoundedSeconds = Field(0.0, description="Fixed time of every step.")
    prefill_tokens_per_s: BoundedPositiveFloat = Field(
        description="Prompt tokens processed per second."
    )
    decode_base_s: BoundedSeconds = Field(description="Added once to a step that decodes.")
    decode_per_seq_s: BoundedSeconds = Field(0.0, description="Added per decoding sequence.")
    kv_token_s: BoundedSeconds = Field(0.0, description="Added per cached token read.")


StepTime = Annotated[
    Union[RooflineStepTime, ProfileStepTime, LinearStepTime],  # noqa: UP007
    Field(discriminator="model"),
]

# ---------------------------------------------------------------- targets


class Slo(StrictModel):
    """Latency targets: a measured request meets the SLO when its TTFT <= ttft_s and its TPOT <=
    tpot_s (a request of one output token has no TPOT and meets that half)."""

    ttft_s: BoundedPositiveFloat | None = Field(
        None, description="Time-to-first-token target, seconds."
    )
    tpot_s: BoundedPositiveFloat | None = Field(
        None, description="Time-per-output-token target, seconds."
    )

    @model_validator(mode="after")
    def _some_target(self) -> Slo:
        if self.ttft_s is None and self.tpot_s is None:
            raise ValueError("give ttft_s, tpot_s or both")
        return self


class GoodputSearch(StrictModel):
    """Search: the highest of `rates_rps` (total arrival rate) at which SLO attainment >= target."""

    rates_rps: list[BoundedPositiveFloat] = Field(
        min_length=1,
        max_length=1000,
        description="Total arrival rates to try, requests/s (each becomes a sweep point of "
        "workload.arrival.rate_rps).",
    )
    attainment: Fraction = Field(
        0.9, description="Share of requests that must meet the SLO at a rate that counts."
    )


# ---------------------------------------------------------- batched-engine architecture fields

DecodeSteps = Literal["output-1", "output"]
DECODE_STEPS_HELP = (
    "Decode iterations per request: 'output-1' (vLLM, DistServe): the prefill's last position "
    "samples the first token, then one iteration per further token; 'output': one iteration per "
    "output token after the prefill (the exclusive engine's accounting)."
)


Scheduler = Literal["custom", "vllm", "distserve"]
Watermark = Annotated[float, Field(ge=0, lt=1)]
# Each preset: the architecture kind it models -> the field values it fills (explicit fields win).
# Sources: vLLM's engine arguments (max-num-seqs 256, max-num-batched-tokens max(max_model_len,
# 2048) without chunked prefill) and DistServe's defaults as its README and the shipped
# measurements' README give them (prefill stage FCFS, 128 requests and 8,192 tokens per batch;
# decode stage FCFS, 1,024 requests; first token at the end of prefill).
SCHEDULER_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "vllm": (
        "monolithic",
        {
            "max_batch_size": 256,
            "chunked_prefill_tokens": None,
            "max_prefill_tokens": 2048,
            "decode_steps": "output-1",
            "kv_block_tokens": 16,
            "kv_watermark": 0.01,
        },
    ),
    "distserve": (
        "disaggregated",
        {
            "prefill_max_batch_size": 128,
            "prefill_token_budget": 8192,
            "decode_max_batch_size": 1024,
            "decode_steps": "output-1",
            "first_token": "prefill",
        },
    ),
}
KV_BLOCK_HELP = (
    "KV cache block, tokens (vLLM's block size): a sequence holds its context rounded up to "
    "whole blocks, a decode takes a new block when its last one is full, and an instance's "
    "capacity is rounded down to whole blocks (default 1: token-exact)."
)
KV_RESERVED_HELP = (
    "GPU memory per GPU, GB, held back from the KV cache for activations, as vLLM sizes its "
    "cache at start-up (gpu-memory-utilization x total, less the weights and the peak memory "
    "of a profiling step of max-num-batched-tokens). When set, each instance's KV capacity "
    "comes from memory, (tp x pp) x (gpu.hbm_gb x gpu.memory_fraction - this) less the "
    "weights, instead of the profile preset's DistServe table (absent: the table, or the "
    "memory formula without a reserve)."
)
KV_WATERMARK_HELP = (
    "Share of an instance's KV blocks an admission must leave free (vLLM's watermark, 0.01 in "
    "the vllm preset): a waiting sequence is admitted only if int(this x blocks) blocks stay "
    "free after its own; running decodes may still use them (default 0: none)."
)
SCHEDULER_HELP = (
    "Scheduler preset, named after the system it models; it fills the fields it lists, and "
    "fields given explicitly win. 'custom' (default): every field its own default. 'vllm' "
    "(monolithic; vLLM's default scheduler without chunked prefill): max_batch_size 256 "
    "(max-num-seqs), kv_block_tokens 16 (block size), max_prefill_tokens 2048 "
    "(max-num-batched-tokens; vLLM uses max(max_model_len, 2048): set it for longer-context "
    "models), kv_watermark 0.01, whole prompts FCFS ahead of decodes, decode_steps output-1. "
    "'distserve' "
    "(disaggregated; DistServe's per-stage FCFS): prefill_max_batch_size 128, "
    "prefill_token_budget 8192, decode_max_batch_size 1024, decode_steps output-1, "
    "first_token prefill. The per-iteration overhead comes with the profile step-time preset "
    "of the same name (step_time: {model: profile, preset: vllm | distserve})."
)


def apply_scheduler_preset(data: Any, kind: str) -> Any:
    """Fill the fields a `scheduler` preset lists and the input leaves out (explicit fields win);
    a preset of another architecture kind is refused."""
    if not isinstance(data, dict):
        return data
    name = data.get("scheduler", "custom")
    if name not in SCHEDULER_PRESETS:
        return data  # 'custom', or a bad value the Literal field reports
    preset_kind, fields = SCHEDULER_PRESETS[name]
    if preset_kind != kind:
        fits = [repr(n) for n, (k, _) in SCHEDULER_PRESETS.items() if k == kind]
        raise ValueError(
            f"scheduler: {name!r} models a {preset_kind} engine; a {kind} architecture takes "
            f"'custom' or {', '.join(fits)}"
        )
    if data.get("chunked_prefill_tokens") is not None:
        fields = {k: v for k, v in fields.items() if k != "max_prefill_tokens"}  # chunking caps
    return {**fields, **data}


class MonolithicServing(StrictModel):
    """Batched-engine fields of a monolithic architecture (ignored by the exclusive engine).

    Instances of `tensor_parallel` GPUs each run continuous batching of at most `max_batch_size`
    sequences. Without `chunked_prefill_tokens`, waiting prompts are prefilled ahead of decodes;
    with it, every step carries all running decodes plus prompt chunks up to that many tokens.
    """

    tensor_parallel: ParallelDegree = Field(
        1, description="GPUs per instance (gpus must be a multiple)."
    )
    max_batch_size: BoundedCount = Field(256, description="Most sequences in one step.")
    chunked_prefill_tokens: BoundedCount | None = Field(
        None,
        description="Chunked prefill: most tokens per step, decodes included "
        "(absent: prompts are prefilled whole, ahead of decodes).",
    )
    max_prefill_tokens: BoundedCount | None = Field(
        None,
        description="Without chunked prefill: most prompt tokens in one prefill step, whole "
        "prompts FCFS (a longer prompt runs alone); vLLM's max-num-batched-tokens "
        "(absent: every waiting prompt in one step).",
    )
    decode_steps: DecodeSteps = Field("output-1", description=DECODE_STEPS_HELP)
    kv_block_tokens: BoundedCount = Field(1, description=KV_BLOCK_HELP)
    kv_reserved_gb: NonNegativeFloat | None = Field(None, description=KV_RESERVED_HELP)
    kv_watermark: Watermark = Field(0.0, description=KV_WATERMARK_HELP)
    scheduler: Scheduler = Field("custom", description=SCHEDULER_HELP)

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        return apply_scheduler_preset(data, "monolithic")

    @model_validator(mode="after")
    def _fits(self) -> MonolithicServing:
        gpus = getattr(self, "gpus", None)
        if gpus is not None and gpus % self.tensor_parallel:
            raise ValueError(
                f"gpus ({gpus}) must be a multiple of tensor_parallel ({self.tensor_parallel})"
            )
        chunk = self.chunked_prefill_tokens
        if chunk is not None and self.max_prefill_tokens is not None:
            raise ValueError(
                "max_prefill_tokens caps unchunked prefill steps; with chunked_prefill_tokens "
                "that budget already caps every step"
            )
        if chunk is not None and chunk < self.max_batch_size:
            raise ValueError(
                f"chunked_prefill_tokens ({chunk}) must be at least max_batch_size "
                f"({self.max_batch_size}), or a full batch of decodes leaves no room for prompts"
            )
        return self


class DisaggregatedServing(StrictModel):
    """Batched-engine fields of a disaggregated architecture (ignored by the exclusive engine).

    Prefill instances (`prefill_tensor_parallel` GPUs each) batch whole prompts up to
    `prefill_token_budget` tokens and `max_batch_size` prompts per step; each prompt's KV then
    moves to a decode instance over that instance's link of `kv_link_gb_s`; decode instances
    (`decode_tensor_parallel` GPUs) batch up to `max_batch_size` running sequences.
    """

    prefill_tensor_parallel: ParallelDegree = Field(
        1, description="GPUs per prefill instance (prefill_gpus must be a multiple)."
    )
    decode_tensor_parallel: ParallelDegree = Field(
        1, description="GPUs per decode instance (decode_gpus must be a multiple)."
    )
    max_batch_size: BoundedCount = Field(
        256, description="Most prompts in a prefill step and most sequences in a decode step."
    )
    prefill_token_budget: BoundedCount = Field(
        4096, description="Most prompt tokens in one prefill step (a longer prompt runs alone)."
    )
    # 25 GB/s: one 200 Gb/s (HDR InfiniBand class) link per decode instance.
    kv_link_gb_s: BoundedPositiveFloat = Field(
        25.0, description="Bandwidth of each decode instance's KV-transfer link, GB/s."
    )
    prefill_max_batch_size: BoundedCount | None = Field(
        None, description="Most prompts in a prefill step (absent: max_batch_size)."
    )
    decode_max_batch_size: BoundedCount | None = Field(
        None, description="Most sequences in a decode step (absent: max_batch_size)."
    )
    decode_pipeline_parallel: ParallelDegree = Field(
        1,
        description="Pipeline stages per decode instance (decode_gpus must be a multiple of "
        "decode_tensor_parallel x this). Modelled as one instance with the KV cache of all its "
        "stages running one batch at a time, each step the whole model's step time on one "
        "stage's GPUs: the stages add KV capacity, not concurrency (a profile preset's own "
        "per-iteration overhead for pipelined instances stands for the overlap).",
    )
    decode_steps: DecodeSteps = Field("output-1", description=DECODE_STEPS_HELP)
    kv_block_tokens: BoundedCount = Field(1, description=KV_BLOCK_HELP)
    kv_reserved_gb: NonNegativeFloat | None = Field(None, description=KV_RESERVED_HELP)
    scheduler: Scheduler = Field("custom", description=SCHEDULER_HELP)

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        return apply_scheduler_preset(data, "disaggregated")

    @model_validator(mode="after")
    def _fits(self) -> DisaggregatedServing:
        for pool in ("prefill", "decode"):
            gpus = getattr(self, f"{pool}_gpus", None)
            tp = getattr(self, f"{pool}_tensor_parallel")
            if pool == "decode" and self.decode_pipeline_parallel > 1:
                pp = self.decode_pipeline_parallel
                if gpus is not None and gpus % (tp * pp):
                    raise ValueError(
                        f"decode_gpus ({gpus}) must be a multiple of decode_tensor_parallel x "
                        f"decode_pipeline_parallel ({tp} x {pp})"
                    )
            if gpus is not None and gpus % tp:
                raise ValueError(
                    f"{pool}_gpus ({gpus}) must be a multiple of {pool}_tensor_parallel ({tp})"
                )
        return self


# ---------------------------------------------------------------- a GPU per pool, and its price


def pool_gpu(sc: Any, arch: Any, pool: str) -> Any:
    """The `Gpu` block a pool runs on: its own (`gpu`, `prefill_gpu`, `decode_gpu` of the
    architecture) when given, else the study's `gpu`."""
    own = arch.pool_gpus()[pool]
    return sc.gpu if own is None else own


@dataclass(frozen=True)
class Economics:
    """What an architecture's GPUs cost per hour and draw at rated power (None: unknown)."""

    cost_usd_per_hour: float | None  # all its GPUs
    power_w: float | None  # all its GPUs at their rated power
    gpu_labels: dict[str, str]  # pool -> the GPU it runs on


def economics(sc: Any, arch: Any) -> Economics:
    """Price and rated power of all of an architecture's GPUs: sum over pools of GPUs x the
    pool GPU's `usd_per_hour` (`power_w`); None when any pool's figure is unknown."""
    cost: float | None = 0.0
    power: float | None = 0.0
    labels = {}
    for pool, gpus in arch.pools().items():
        g = pool_gpu(sc, arch, pool)
        labels[pool] = g.label()
        usd, watts = g.usd_per_hour_resolved(), g.power_w_resolved()
        cost = None if cost is None or usd is None else cost + gpus * usd
        power = None if power is None or watts is None else power + gpus * watts
    return Economics(cost_usd_per_hour=cost, power_w=power, gpu_labels=labels)
