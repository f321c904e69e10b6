"""From a scenario's serving sections to what the engines need, and the figures `validate` shows.

Pure functions of a validated scenario's sections (`engine`, `model`, `gpu`, `step_time`, an
architecture). `check` is what the engine needs beyond each field's own validation; the study
runner's plan calls it for every scenario (`distsim.runner.plan`), so the spec imports no engine.

Resolution rules (documented in docs/serving-model.md):
- exclusive token rates: `gpu.prefill_tokens_per_s` / `decode_tokens_per_s` when given, else
  derived from `model` and the GPU hardware (`distsim.spec.hardware.exclusive_rates`);
- step time: `step_time` when given, else the roofline (needs `model` and GPU hardware);
- KV capacity per instance: the shipped DistServe table for a profile preset; else the memory
  formula when `model` and GPU hardware are known; else unlimited (no KV model without a model);
- KV bytes per token: from `model`; 0 without one (KV transfers then take no time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from distsim.sim.step_time import (
    PROFILE_GPU,
    PROFILE_OVERHEAD,
    PROFILE_PIPELINE_OVERHEAD_S,
    Linear,
    ProfileFit,
    Roofline,
    StepTimeModel,
    fit_from_mapping,
    profile_kv_capacity,
    profile_table,
)
from distsim.spec.hardware import (
    ExclusiveRates,
    GpuHardware,
    ModelShape,
    exclusive_rates,
    kv_capacity_tokens,
)
from distsim.spec.serving import (  # noqa: F401  (Economics, economics: re-exported)
    Economics,
    Gpu,
    LinearStepTime,
    ProfileStepTime,
    RooflineStepTime,
    economics,
    pool_gpu,
)
from distsim.spec.study import Architecture, Disaggregated, Monolithic, Scenario

UNLIMITED = math.inf


@dataclass(frozen=True)
class PoolConfig:
    """One pool of the batched engine: identical instances and how they are scheduled."""

    name: str  # gpu | prefill | decode
    gpus: int
    tensor_parallel: int
    instances: int
    max_batch_size: int
    kv_capacity_tokens: float  # per instance; math.inf when KV is not modelled
    step: StepTimeModel
    token_budget: int | None  # chunked prefill (gpu pool) or prefill batch budget (prefill pool)
    pipeline_parallel: int = 1  # stages per instance, each of tensor_parallel GPUs
    prefill_cap: int | None = None  # unchunked gpu pool: most prompt tokens per prefill step
    kv_block_tokens: int = 1  # KV allocation unit; capacity is a whole number of blocks
    kv_admit_reserve_tokens: int = 0  # KV an admission must leave free (vLLM's watermark)


@dataclass(frozen=True)
class ServingConfig:
    """Everything the batched engine needs for one architecture."""

    pools: dict[str, PoolConfig]
    kv_bytes_per_token: float
    kv_link_gb_s: float | None  # disaggregated only
    first_token: str  # prefill | decode
    decode_steps: str = "output-1"  # output-1 (the prefill emits the first token) | output
    routing: str = "central"  # central | round_robin | random | least_loaded (spec.study)


def model_shape(sc: Scenario) -> ModelShape | None:
    return sc.model.shape() if sc.model is not None else None


def hardware(sc: Scenario, gpu: Gpu | None = None) -> GpuHardware | None:
    """Hardware figures of `gpu` (a pool's block), or of the study's `gpu` when None."""
    return (sc.gpu if gpu is None else gpu).hardware()


def token_rates(sc: Scenario, gpu: Gpu | None = None) -> ExclusiveRates | None:
    """The exclusive engine's token rates of one GPU (`gpu`, or the study's `gpu` when None), or
    None if the spec cannot give them."""
    g = sc.gpu if gpu is None else gpu
    if g.prefill_tokens_per_s is not None and g.decode_tokens_per_s is not None:
        return ExclusiveRates(g.prefill_tokens_per_s, g.decode_tokens_per_s)
    m, hw = model_shape(sc), g.hardware()
    if m is None or hw is None:
        return None
    return exclusive_rates(m, hw)


def pool_rates(sc: Scenario, arch: Architecture) -> dict[str, ExclusiveRates]:
    """Pool name -> the exclusive engine's token rates of one GPU of that pool (spec checked)."""
    out = {}
    for pool in arch.pools():
        rates = token_rates(sc, pool_gpu(sc, arch, pool))
        assert rates is not None, "checked by serving.check"
        out[pool] = rates
    return out


def tensor_parallel_degrees(arch: Architecture) -> dict[str, tuple[int, int]]:
    """Pool name -> (GPUs, tensor-parallel degree)."""
    if isinstance(arch, Monolithic):
        return {"gpu": (arch.gpus, arch.tensor_parallel)}
    if isinstance(arch, Disaggregated):
        return {
            "prefill": (arch.prefill_gpus, arch.prefill_tensor_parallel),
            "decode": (arch.decode_gpus, arch.decode_tensor_parallel),
        }
    raise TypeError(f"unknown architecture {arch!r}")  # pragma: no cover


def step_model(sc: Scenario, tp: int, gpu: Gpu | None = None, pp: int = 1) -> StepTimeModel:
    """The step-time model of one instance of `tp` GPUs of `gpu` (default: the study's `gpu`),
    `pp` pipeline stages of them (a profile preset's pipelined overhead when pp > 1)."""
    st = sc.step_time
    if st is None or isinstance(st, RooflineStepTime):
        m, hw = model_shape(sc), hardware(sc, gpu)
        if m is None or hw is None:
            raise ValueError(
                "step_time: the roofline needs a model and GPU hardware (presets or fields)"
            )
        return Roofline(m, hw, tp)
    if isinstance(st, ProfileStepTime):
        if st.preset is not None:
            preset = sc.model.preset if sc.model is not None else None
            table = profile_table(st.preset)
            if preset not in table:
                raise ValueError(
                    f"step_time.preset: '{st.preset}' was measured for model presets "
                    f"{', '.join(sorted(table))}; set model.preset to one of them"
                )
            if tp not in table[preset]:
                have = ", ".join(str(t) for t in sorted(table[preset]))
                raise ValueError(
                    f"step_time.preset: {st.preset} has no {preset} fit at tensor parallel {tp} "
                    f"(measured: {have})"
                )
            fixed, per_token = PROFILE_OVERHEAD[st.preset]
            if pp > 1:
                fixed = PROFILE_PIPELINE_OVERHEAD_S.get(st.preset, fixed)
            return _with_overhead(table[preset][tp], st, (fixed, per_token))
        assert st.coefficients is not None
        if tp not in st.coefficients:
            have = ", ".join(str(t) for t in sorted(st.coefficients))
            raise ValueError(
                f"step_time.coefficients: no fit for tensor parallel {tp} (given: {have})"
            )
        return _with_overhead(fit_from_mapping(st.coefficients[tp].model_dump()), st, (0.0, 0.0))
    if isinstance(st, LinearStepTime):
        return Linear(
            st.overhead_s, st.prefill_tokens_per_s, st.decode_base_s, st.decode_per_seq_s,
            st.kv_token_s,
        )  # fmt: skip
    raise TypeError(f"unknown step_time {st!r}")  # pragma: no cover


def _with_overhead(
    fit: ProfileFit, st: ProfileStepTime, default: tuple[float, float]
) -> ProfileFit:
    """The fit with the spec's per-iteration overhead, or the default (a preset's fitted one)."""
    fixed = default[0] if st.overhead_s is None else st.overhead_s
    per_token = default[1] if st.overhead_per_token_s is None else st.overhead_per_token_s
    return replace(fit, overhead_s=fixed, overhead_per_token_s=per_token)


def kv_capacity(
    sc: Scenario, tp: int, gpu: Gpu | None = None, pp: int = 1, reserved_gb: float | None = None
) -> tuple[float, str]:
    """KV capacity in tokens of one instance of `tp` GPUs of `gpu` (default: the study's) per
    pipeline stage, `pp` stages together, and where the figure comes from. `reserved_gb` (an
    architecture's `kv_reserved_gb`): size the cache from memory less that much per GPU, as
    vLLM does, instead of from the profile preset's table."""
    g = sc.gpu if gpu is None else gpu
    st = sc.step_time
    if reserved_gb is not None:
        m, hw = model_shape(sc), g.hardware()
        if m is None or hw is None:
            return UNLIMITED, "unlimited (no model and GPU hardware)"
        cap = kv_capacity_tokens(m, hw, tp * pp, g.memory_fraction, reserved_gb)
        return float(cap), f"memory formula, {reserved_gb:g} GB a GPU reserved"
    if isinstance(st, ProfileStepTime) and st.preset is not None and sc.model is not None:
        table = profile_kv_capacity(pp)
        key = (sc.model.preset, tp)
        if key in table:
            return float(table[key]), "DistServe measured table (max_num_tokens.csv)"
    m, hw = model_shape(sc), g.hardware()
    if m is None or hw is None:
        return UNLIMITED, "unlimited (no model and GPU hardware)"
    return float(kv_capacity_tokens(m, hw, tp * pp, g.memory_fraction)), "memory formula"


def _whole_blocks(capacity_tokens: float, block_tokens: int) -> float:
    """A KV capacity rounded down to whole blocks (unchanged for 1-token blocks or no limit)."""
    if block_tokens == 1 or math.isinf(capacity_tokens):
        return capacity_tokens
    return float(math.floor(capacity_tokens / block_tokens) * block_tokens)


def _watermark_tokens(capacity_tokens: float, block_tokens: int, watermark: float) -> int:
    """KV an admission must leave free: int(watermark x whole blocks) blocks, as vLLM's block
    manager keeps them (0 without a watermark or a KV limit)."""
    if watermark == 0.0 or math.isinf(capacity_tokens):
        return 0
    return int(watermark * (capacity_tokens // block_tokens)) * block_tokens


def configure(sc: Scenario, arch: Architecture) -> ServingConfig:
    """The batched engine's plan for one architecture of a (validated) scenario."""
    pools: dict[str, PoolConfig] = {}
    for name, (gpus, tp) in tensor_parallel_degrees(arch).items():
        budget: int | None = None
        mbs = arch.max_batch_size
        pp = 1
        cap = None
        watermark = 0.0
        if isinstance(arch, Monolithic):
            budget = arch.chunked_prefill_tokens
            cap = arch.max_prefill_tokens
            watermark = arch.kv_watermark
        elif name == "prefill":
            budget = arch.prefill_token_budget
            mbs = arch.prefill_max_batch_size or mbs
        else:
            mbs = arch.decode_max_batch_size or mbs
            pp = arch.decode_pipeline_parallel
        kv_tokens = _whole_blocks(
            kv_capacity(sc, tp, pool_gpu(sc, arch, name), pp, arch.kv_reserved_gb)[0],
            arch.kv_block_tokens,
        )
        # A pipeline of pp stages: one instance holding the KV of all its stages, one batch at a
        # time, each step the whole model's step time on a tp-GPU group (stage times add up).
        pools[name] = PoolConfig(
            name=name,
            gpus=gpus,
            tensor_parallel=tp,
            instances=gpus // (tp * pp),
            max_batch_size=mbs,
            kv_capacity_tokens=kv_tokens,
            step=step_model(sc, tp, pool_gpu(sc, arch, name), pp),
            token_budget=budget,
            pipeline_parallel=pp,
            prefill_cap=cap,
            kv_block_tokens=arch.kv_block_tokens,
            kv_admit_reserve_tokens=_watermark_tokens(kv_tokens, arch.kv_block_tokens, watermark),
        )
    m = model_shape(sc)
    return ServingConfig(
        pools=pools,
        kv_bytes_per_token=m.kv_bytes_per_token if m is not None else 0.0,
        kv_link_gb_s=arch.kv_link_gb_s if isinstance(arch, Disaggregated) else None,
        first_token=arch.first_token if isinstance(arch, Disaggregated) else "prefill",
        decode_steps=arch.decode_steps,
        routing=arch.routing,
    )


_POOL_FIELD = {"gpu": "gpu", "prefill": "prefill_gpu", "decode": "decode_gpu"}


def _gpu_path(arch_name: str, arch: Architecture, pool: str) -> str:
    """The spec path of the GPU block a pool uses (its own, or the study's `gpu`)."""
    if arch.pool_gpus()[pool] is None:
        return "gpu"
    return f"architectures.{arch_name}.{_POOL_FIELD[pool]}"


def check(sc: Scenario) -> None:
    """Raise ValueError('path: problem') if the engine cannot run this scenario as specified."""
    if token_rates(sc) is None:
        raise ValueError(
            "gpu: give prefill_tokens_per_s and decode_tokens_per_s, or a model and GPU hardware "
            "(presets or fields) to derive them"
        )
    for arch_name, arch in sc.architectures.items():
        for pool in arch.pools():
            if token_rates(sc, pool_gpu(sc, arch, pool)) is None:
                raise ValueError(
                    f"{_gpu_path(arch_name, arch, pool)}: give prefill_tokens_per_s and "
                    "decode_tokens_per_s, or a model and GPU hardware (presets or fields)"
                )
    if sc.engine != "batched":
        return
    st = sc.step_time
    if isinstance(st, ProfileStepTime | LinearStepTime) and sc.gpu.step_overhead_s is not None:
        raise ValueError(
            f"gpu.step_overhead_s: applies to the roofline step time only; with step_time.model "
            f"{st.model} set step_time.overhead_s"
        )
    for arch_name, arch in sc.architectures.items():
        for pool, (_gpus, tp) in tensor_parallel_degrees(arch).items():
            g = pool_gpu(sc, arch, pool)
            if (
                isinstance(st, ProfileStepTime)
                and st.preset is not None
                and g.preset not in (None, PROFILE_GPU)
            ):
                raise ValueError(
                    f"step_time.preset: the {st.preset} profile was measured on {PROFILE_GPU}, "
                    f"not {_gpu_path(arch_name, arch, pool)}.preset {g.preset}"
                )
            step_model(sc, tp, g)
            pp = arch.decode_pipeline_parallel if pool == "decode" else 1
            cap, _ = kv_capacity(sc, tp, g, pp, arch.kv_reserved_gb)
            if cap <= 0:
                m = model_shape(sc)
                raise ValueError(
                    f"architectures.{arch_name}: the model's weights ({m.weight_bytes / 1e9:.1f} "
                    f"GB) leave no KV cache on {tp} GPU(s) of the {pool} pool; raise the "
                    f"tensor-parallel degree or {_gpu_path(arch_name, arch, pool)}.memory_fraction"
                    + ("" if arch.kv_reserved_gb is None else ", or lower kv_reserved_gb")
                )


def derived_figures(sc: Scenario) -> dict[str, Any]:
    """What the spec implies, for `distsim validate`: KV bytes per token, exclusive token rates,
    and per architecture and pool the instances, tensor parallel and KV capacity per instance."""
    m = model_shape(sc)
    rates = token_rates(sc)
    out: dict[str, Any] = {
        "engine": sc.engine,
        "kv_bytes_per_token": m.kv_bytes_per_token if m is not None else None,
        "weight_bytes": m.weight_bytes if m is not None else None,
        "exclusive_prefill_tokens_per_s": rates.prefill_tokens_per_s if rates else None,
        "exclusive_decode_tokens_per_s": rates.decode_tokens_per_s if rates else None,
        "exclusive_rates_source": (
            "gpu fields" if sc.gpu.prefill_tokens_per_s is not None else "roofline (model, gpu)"
        ),
        "architectures": {},
    }
    for arch_name, arch in sc.architectures.items():
        pools = {}
        for pool, (gpus, tp) in tensor_parallel_degrees(arch).items():
            g = pool_gpu(sc, arch, pool)
            pp = arch.decode_pipeline_parallel if pool == "decode" else 1
            cap, source = kv_capacity(sc, tp, g, pp, arch.kv_reserved_gb)
            rates_p = token_rates(sc, g)
            pools[pool] = {
                "gpu": g.label(),
                "usd_per_hour": g.usd_per_hour_resolved(),
                "power_w": g.power_w_resolved(),
                "prefill_tokens_per_s": rates_p.prefill_tokens_per_s if rates_p else None,
                "decode_tokens_per_s": rates_p.decode_tokens_per_s if rates_p else None,
                "gpus": gpus,
                "tensor_parallel": tp,
                "instances": gpus // (tp * pp),
                "kv_capacity_tokens": None if math.isinf(cap) else int(cap),
                "kv_capacity_source": source,
            }
        out["architectures"][arch_name] = pools
    return out


def format_derived(figures: dict[str, Any]) -> list[str]:
    """`derived_figures` as short human-readable lines."""
    lines = [f"engine: {figures['engine']}"]
    if figures["kv_bytes_per_token"] is not None:
        lines.append(
            f"KV bytes per token: {figures['kv_bytes_per_token']:,.0f}   "
            f"weights: {figures['weight_bytes'] / 1e9:.1f} GB"
        )
    if figures["exclusive_prefill_tokens_per_s"] is not None:
        lines.append(
            f"exclusive engine rates ({figures['exclusive_rates_source']}): prefill "
            f"{figures['exclusive_prefill_tokens_per_s']:,.0f} tokens/s, decode "
            f"{figures['exclusive_decode_tokens_per_s']:,.1f} tokens/s per GPU"
        )
    for arch_name, pools in figures["architectures"].items():
        for pool, p in pools.items():
            price = "" if p["usd_per_hour"] is None else f", ${p['usd_per_hour']:g}/GPU-h"
            power = "" if p["power_w"] is None else f", {p['power_w']:g} W"
            rates = ""
            if figures["engine"] == "exclusive":
                rates = (
                    f"; prefill {p['prefill_tokens_per_s']:,.0f}, decode "
                    f"{p['decode_tokens_per_s']:,.1f} tokens/s per GPU"
                )
            lines.append(f"{arch_name}/{pool}: {p['gpus']} x {p['gpu']}{price}{power}{rates}")
            if figures["engine"] == "exclusive" and figures["kv_bytes_per_token"] is None:
                continue  # one request per GPU, no KV model
            cap = p["kv_capacity_tokens"]
            cap_text = "unlimited" if cap is None else f"{cap:,} tokens ({p['kv_capacity_source']})"
            lines.append(
                f"  {p['instances']} instance(s) x {p['tensor_parallel']} "
                f"GPU(s), KV capacity {cap_text}"
            )
    return lines
