"""Hardware and model presets, a GPU per pool, and what they imply, checked by hand.

Truth: the datasheet and paper figures quoted next to each preset, and arithmetic done here
independently of the code (KV bytes per token, roofline rates, cost per hour).
"""

from __future__ import annotations

import re

import pytest
from distsim_testkit import study_dict

from distsim.errors import SpecError
from distsim.runner.plan import plan_study
from distsim.sim import serving
from distsim.sim.step_time import Roofline
from distsim.spec.hardware import (
    GPU_ECONOMICS,
    GPU_PRESETS,
    GPU_SOURCES,
    MODEL_PRESETS,
    MODEL_SOURCES,
    exclusive_rates,
)
from distsim.spec.study import validate_study

YEAR = re.compile(r"\b20[0-3]\d\b")


def test_every_preset_names_its_source_and_date() -> None:
    assert set(MODEL_SOURCES) == set(MODEL_PRESETS)
    assert set(GPU_SOURCES) == set(GPU_PRESETS) == set(GPU_ECONOMICS)
    for name, text in {**MODEL_SOURCES, **GPU_SOURCES}.items():
        assert YEAR.search(text), f"{name}: source without a date: {text!r}"
    for name, econ in GPU_ECONOMICS.items():
        assert econ.usd_per_hour > 0 and econ.power_w > 0, name
        assert YEAR.search(econ.price_source), f"{name}: price without a source date"
        assert YEAR.search(econ.power_source), f"{name}: power without a source date"


def test_the_issue_hardware_and_models_are_there() -> None:
    for gpu in ("h100-sxm", "h200", "b200", "a100-40gb", "a100-80gb", "l40s", "l4", "mi300x"):
        assert gpu in GPU_PRESETS
    for model in ("llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "qwen2.5-7b",
                  "qwen2.5-72b", "mistral-7b", "mixtral-8x7b"):  # fmt: skip
        assert model in MODEL_PRESETS


@pytest.mark.parametrize(
    ("model", "kv_bytes"),
    [
        ("llama-3.1-405b", 2 * 126 * 8 * 128 * 2),  # 516,096 bytes
        ("qwen2.5-7b", 2 * 28 * 4 * 128 * 2),  # 57,344
        ("mistral-7b", 2 * 32 * 8 * 128 * 2),  # 131,072
        ("mixtral-8x7b", 2 * 32 * 8 * 128 * 2),  # experts do not change the KV cache
    ],
)
def test_kv_bytes_per_token_by_hand(model: str, kv_bytes: int) -> None:
    assert MODEL_PRESETS[model].kv_bytes_per_token == kv_bytes


def test_mixture_of_experts_computes_with_active_and_reads_all_parameters() -> None:
    """Mixtral 8x7B on an H100: prefill (compute) at 989e12 x 0.7 / (2 x 12.9e9) tokens/s;
    decode (memory) reads 46.7e9 x 2 bytes per step: 1 / (0.004 + 93.4e9 / (3.35e12 x 0.7))."""
    m, g = MODEL_PRESETS["mixtral-8x7b"], GPU_PRESETS["h100-sxm"]
    rates = exclusive_rates(m, g)
    assert rates.prefill_tokens_per_s == pytest.approx(989e12 * 0.7 / (2 * 12.9e9))
    assert rates.decode_tokens_per_s == pytest.approx(1 / (0.004 + 93.4e9 / (3.35e12 * 0.7)))
    # A 4,096-token prefill step: compute 2 x 12.9e9 x 4096 + attention 4 x 32 x 4096 x 4096^2/2
    # FLOPs; it is compute-bound, so the step is overhead + that / (989e12 x 0.7).
    flops = 2 * 12.9e9 * 4096 + 4 * 32 * 4096 * (4096**2 / 2)
    step = Roofline(m, g, 1).step_s(4096, 4096.0**2, 0, 0, 0)
    assert step == pytest.approx(0.004 + flops / (989e12 * 0.7))


def test_active_parameters_cannot_exceed_the_total() -> None:
    data = study_dict(model={"preset": "mistral-7b", "active_params_b": 9.0})
    with pytest.raises(SpecError, match=r"model: active_params_b \(9\) exceeds params_b"):
        validate_study(data)


def hetero(**arch_fields) -> dict:
    return study_dict(
        model={"preset": "llama-3.1-8b"},
        gpu={"preset": "a100-80gb"},
        architectures={
            "mono_h100": {"kind": "monolithic", "gpus": 2, "gpu": {"preset": "h100-sxm"}},
            "split": {
                "kind": "disaggregated",
                "prefill_gpus": 1,
                "decode_gpus": 3,
                "prefill_gpu": {"preset": "h100-sxm"},
                **arch_fields,
            },
        },  # fmt: skip
        baseline="mono_h100",
    )


def test_each_pool_runs_on_its_own_gpu() -> None:
    study = validate_study(hetero())
    m = MODEL_PRESETS["llama-3.1-8b"]
    h100 = exclusive_rates(m, GPU_PRESETS["h100-sxm"])
    a100 = exclusive_rates(m, GPU_PRESETS["a100-80gb"])
    split = serving.pool_rates(study, study.architectures["split"])
    assert split["prefill"] == h100 and split["decode"] == a100  # decode: the study's gpu
    assert serving.pool_rates(study, study.architectures["mono_h100"])["gpu"] == h100


def test_cost_and_power_by_hand() -> None:
    """mono_h100: 2 x $3.348 = $6.696/h, 2 x 700 W; split: 1 H100 + 3 A100 = 3.348 + 3 x 2.16 =
    $9.828/h, 700 + 3 x 400 = 1,900 W. A study's own price wins over the preset's."""
    study = validate_study(hetero())
    mono = serving.economics(study, study.architectures["mono_h100"])
    assert mono.cost_usd_per_hour == pytest.approx(6.696)
    assert mono.power_w == pytest.approx(1400.0)
    split = serving.economics(study, study.architectures["split"])
    assert split.cost_usd_per_hour == pytest.approx(9.828)
    assert split.power_w == pytest.approx(1900.0)
    assert split.gpu_labels == {"prefill": "h100-sxm", "decode": "a100-80gb"}
    cheap = validate_study(
        hetero(decode_gpu={"preset": "a100-80gb", "usd_per_hour": 1.0, "power_w": 300})
    )
    split = serving.economics(cheap, cheap.architectures["split"])
    assert split.cost_usd_per_hour == pytest.approx(3.348 + 3.0)
    assert split.power_w == pytest.approx(700 + 900)


def test_price_unknown_without_a_preset_or_a_figure() -> None:
    study = validate_study(study_dict())  # token rates only
    econ = serving.economics(study, study.architectures["monolithic"])
    assert econ.cost_usd_per_hour is None and econ.power_w is None


def test_a_pool_gpu_that_gives_no_rates_is_one_error_naming_it() -> None:
    data = study_dict(
        architectures={
            "d": {
                "kind": "disaggregated",
                "prefill_gpus": 1,
                "decode_gpus": 1,
                "decode_gpu": {"preset": "l4"},
            }
        },  # fmt: skip
        baseline="d",
    )  # token rates in the study's gpu, but no model: the L4 pool cannot derive its rates
    # What an engine needs is checked for every scenario of the plan (the spec imports no engine).
    with pytest.raises(SpecError, match=r"^architectures\.d\.decode_gpu: give prefill_tokens"):
        plan_study(validate_study(data))


def test_unknown_field_in_a_pool_gpu_is_named() -> None:
    data = hetero(decode_gpu={"preset": "a100-80gb", "price": 1})
    with pytest.raises(SpecError, match=r"architectures\.split\.decode_gpu\.price: unknown"):
        validate_study(data)


def test_batched_kv_capacity_follows_the_pool_gpu() -> None:
    """Batched engine: llama-3.1-8b (16.06 GB of weights) on one H200 (141 GB x 0.9) holds
    (126.9e9 - 16.06e9) / 131,072 tokens of KV; the decode pool on the study's A100 80GB
    (72e9 - 16.06e9) / 131,072."""
    data = hetero(decode_gpu=None, prefill_gpu={"preset": "h200"})
    data["engine"] = "batched"
    study = validate_study(data)
    plan = serving.configure(study, study.architectures["split"])
    w = 8.03e9 * 2
    assert plan.pools["prefill"].kv_capacity_tokens == (141e9 * 0.9 - w) // 131072
    assert plan.pools["decode"].kv_capacity_tokens == (80e9 * 0.9 - w) // 131072
    assert plan.pools["prefill"].step.gpu == GPU_PRESETS["h200"]
    assert plan.pools["decode"].step.gpu == GPU_PRESETS["a100-80gb"]


@pytest.mark.parametrize("implementation", ["fast", "simpy"])
def test_batched_engine_steps_each_pool_on_its_own_gpu(implementation: str) -> None:
    """One request (1,000 prompt tokens, 50 output tokens) alone in a disaggregated batched
    architecture, prefill on an H100, decode on the study's A100: its first token comes one H100
    prefill step after arrival; then its KV crosses the 25 GB/s link (1,000 x 131,072 bytes) and
    it decodes 49 single-sequence A100 steps (the prefill sampled the first of its 50 tokens)
    reading 1,000 + i cached tokens."""
    import numpy as np

    from distsim.sim import batched
    from distsim.workload.generate import Requests

    data = hetero()
    data["engine"] = "batched"
    data["architectures"]["split"] = {
        "kind": "disaggregated", "prefill_gpus": 1, "decode_gpus": 1, "first_token": "prefill",
        "prefill_gpu": {"preset": "h100-sxm"}, "kv_link_gb_s": 25,
    }  # fmt: skip
    study = validate_study(data)
    plan = serving.configure(study, study.architectures["split"])
    req = Requests(
        arrival_s=np.array([1.0]), prompt_tokens=np.array([1000]), output_tokens=np.array([50])
    )
    timeline = batched.run(req, plan, implementation=implementation)
    m = MODEL_PRESETS["llama-3.1-8b"]
    prefill_s = Roofline(m, GPU_PRESETS["h100-sxm"]).step_s(1000, 1000.0**2, 0, 0, 0)
    decode = Roofline(m, GPU_PRESETS["a100-80gb"])
    done_s = 1.0 + prefill_s + 1000 * 131_072 / 25e9
    for i in range(49):
        done_s += decode.step_s(0, 0.0, 0, 1, 1000 + i)
    assert timeline.first_token_s[0] == pytest.approx(1.0 + prefill_s, rel=1e-12)
    assert timeline.done_s[0] == pytest.approx(done_s, rel=1e-12)
