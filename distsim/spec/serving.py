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
Cross-section checks (what each engine needs) live in `distsim.sim.serving.check`.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from distsim.spec.hardware import (
    GPU_PRESETS,
    MODEL_PRESETS,
    GpuHardware,
    ModelShape,
    with_overrides,
)

_Pos = Annotated[float, Field(gt=0, le=1e12)]
_NonNeg = Annotated[float, Field(ge=0, le=1e6)]
_Frac = Annotated[float, Field(gt=0, le=1)]
_PosInt = Annotated[int, Field(gt=0, le=1_000_000)]

ModelPreset = Literal[
    "opt-13b", "opt-66b", "llama-2-7b", "llama-2-13b", "llama-3-8b", "llama-3-70b"
]
GpuPreset = Literal["a100-80gb", "h100-sxm", "l40s"]
assert set(ModelPreset.__args__) == set(MODEL_PRESETS)  # type: ignore[attr-defined]
assert set(GpuPreset.__args__) == set(GPU_PRESETS)  # type: ignore[attr-defined]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelSpec(_Strict):
    """The served model: a preset, explicit shape fields, or a preset with fields overridden."""

    preset: ModelPreset | None = None
    params_b: _Pos | None = None
    layers: _PosInt | None = None
    kv_heads: _PosInt | None = None
    head_dim: _PosInt | None = None
    hidden: _PosInt | None = None
    bytes_per_param: Annotated[float, Field(gt=0, le=8)] | None = None

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
        return self

    def shape(self) -> ModelShape:
        fields = self.model_dump(exclude={"preset"})
        if self.preset is not None:
            return with_overrides(MODEL_PRESETS[self.preset], **fields)
        return ModelShape(**{k: v for k, v in fields.items() if v is not None})


_HARDWARE_ASSUMPTIONS = GPU_PRESETS["a100-80gb"]  # efficiencies used when no preset is named


class Gpu(_Strict):
    """One GPU: a hardware preset or fields, and/or the exclusive engine's token rates."""

    preset: GpuPreset | None = None
    peak_tflops: _Pos | None = None
    hbm_gb: _Pos | None = None
    hbm_gb_s: _Pos | None = None
    mfu: _Frac | None = None
    mbu: _Frac | None = None
    step_overhead_s: _NonNeg | None = None
    interconnect_gb_s: _Pos | None = None
    allreduce_latency_s: _NonNeg | None = None
    memory_fraction: _Frac = 0.9  # share of HBM for weights + KV cache (the rest: activations)
    prefill_tokens_per_s: _Pos | None = None  # exclusive engine; derived from hardware if absent
    decode_tokens_per_s: _Pos | None = None

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
            exclude={"preset", "memory_fraction", "prefill_tokens_per_s", "decode_tokens_per_s"}
        )
        if self.preset is not None:
            return with_overrides(GPU_PRESETS[self.preset], **fields)
        if self.peak_tflops is None:
            return None
        return with_overrides(_HARDWARE_ASSUMPTIONS, **fields)


# ---------------------------------------------------------------- step-time models


class RooflineStepTime(_Strict):
    """Compute/memory roofline from `model` and `gpu` (see `distsim.sim.step_time.Roofline`)."""

    model: Literal["roofline"]


Triple = tuple[float, float, float]


class ProfileCoefficients(_Strict):
    """One tensor-parallel degree of a measured profile, DistServe's JSON form, milliseconds."""

    prefill: Triple
    decoding_smallbs: Triple
    decoding_largebs: Triple
    decoding_large_small_bs_threshold: _PosInt


class ProfileStepTime(_Strict):
    """Measured step-time fits: a shipped preset (A100-80GB, OPT-13B/66B) or your own.

    `coefficients` maps tensor-parallel degree -> fits; every pool's degree must be present.
    """

    model: Literal["profile"]
    preset: Literal["distserve", "vllm"] | None = None
    coefficients: dict[Annotated[int, Field(gt=0, le=1024)], ProfileCoefficients] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ProfileStepTime:
        if (self.preset is None) == (self.coefficients is None):
            raise ValueError("give exactly one of preset and coefficients")
        if self.coefficients is not None and not self.coefficients:
            raise ValueError("coefficients: needs at least one tensor-parallel degree")
        return self


class LinearStepTime(_Strict):
    """overhead_s + P/prefill_tokens_per_s + [D>0](decode_base_s + decode_per_seq_s*D +
    kv_token_s*K); the same for every tensor-parallel degree."""

    model: Literal["linear"]
    overhead_s: _NonNeg = 0.0
    prefill_tokens_per_s: _Pos
    decode_base_s: _NonNeg
    decode_per_seq_s: _NonNeg = 0.0
    kv_token_s: _NonNeg = 0.0


StepTime = Annotated[
    Union[RooflineStepTime, ProfileStepTime, LinearStepTime],  # noqa: UP007
    Field(discriminator="model"),
]

# ---------------------------------------------------------------- targets


class Slo(_Strict):
    """Latency targets: a measured request meets the SLO when its TTFT <= ttft_s and its TPOT <=
    tpot_s (a request of one output token has no TPOT and meets that half)."""

    ttft_s: _Pos | None = None
    tpot_s: _Pos | None = None

    @model_validator(mode="after")
    def _some_target(self) -> Slo:
        if self.ttft_s is None and self.tpot_s is None:
            raise ValueError("give ttft_s, tpot_s or both")
        return self


class GoodputSearch(_Strict):
    """Search: the highest of `rates_rps` (total arrival rate) at which SLO attainment >= target."""

    rates_rps: list[_Pos] = Field(min_length=1, max_length=1000)
    attainment: _Frac = 0.9


# ---------------------------------------------------------- batched-engine architecture fields


class MonolithicServing(_Strict):
    """Batched-engine fields of a monolithic architecture (ignored by the exclusive engine).

    Instances of `tensor_parallel` GPUs each run continuous batching of at most `max_batch_size`
    sequences. Without `chunked_prefill_tokens`, waiting prompts are prefilled ahead of decodes;
    with it, every step carries all running decodes plus prompt chunks up to that many tokens.
    """

    tensor_parallel: Annotated[int, Field(gt=0, le=1024)] = 1
    max_batch_size: _PosInt = 256
    chunked_prefill_tokens: _PosInt | None = None

    @model_validator(mode="after")
    def _fits(self) -> MonolithicServing:
        gpus = getattr(self, "gpus", None)
        if gpus is not None and gpus % self.tensor_parallel:
            raise ValueError(
                f"gpus ({gpus}) must be a multiple of tensor_parallel ({self.tensor_parallel})"
            )
        chunk = self.chunked_prefill_tokens
        if chunk is not None and chunk < self.max_batch_size:
            raise ValueError(
                f"chunked_prefill_tokens ({chunk}) must be at least max_batch_size "
                f"({self.max_batch_size}), or a full batch of decodes leaves no room for prompts"
            )
        return self


class DisaggregatedServing(_Strict):
    """Batched-engine fields of a disaggregated architecture (ignored by the exclusive engine).

    Prefill instances (`prefill_tensor_parallel` GPUs each) batch whole prompts up to
    `prefill_token_budget` tokens and `max_batch_size` prompts per step; each prompt's KV then
    moves to a decode instance over that instance's link of `kv_link_gb_s`; decode instances
    (`decode_tensor_parallel` GPUs) batch up to `max_batch_size` running sequences.
    """

    prefill_tensor_parallel: Annotated[int, Field(gt=0, le=1024)] = 1
    decode_tensor_parallel: Annotated[int, Field(gt=0, le=1024)] = 1
    max_batch_size: _PosInt = 256
    prefill_token_budget: _PosInt = 4096
    # 25 GB/s: one 200 Gb/s (HDR InfiniBand class) link per decode instance.
    kv_link_gb_s: _Pos = 25.0

    @model_validator(mode="after")
    def _fits(self) -> DisaggregatedServing:
        for pool in ("prefill", "decode"):
            gpus = getattr(self, f"{pool}_gpus", None)
            tp = getattr(self, f"{pool}_tensor_parallel")
            if gpus is not None and gpus % tp:
                raise ValueError(
                    f"{pool}_gpus ({gpus}) must be a multiple of {pool}_tensor_parallel ({tp})"
                )
        return self
