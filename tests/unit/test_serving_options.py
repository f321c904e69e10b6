"""The serving options behind the fidelity replay, by hand: separate prefill/decode batch
limits, pipeline-parallel decode instances, the profile's per-iteration overhead (including
the one-line error for `gpu.step_overhead_s`, which only the roofline uses) and vLLM's KV
capacity from memory (`kv_reserved_gb`)."""

from __future__ import annotations

import pytest
from distsim_testkit import study_dict

from distsim.sim import serving
from distsim.sim.step_time import (
    PROFILE_OVERHEAD,
    PROFILE_PIPELINE_OVERHEAD_S,
    ProfileFit,
    profile_table,
)
from distsim.spec.study import Scenario


def scenario(**changes) -> Scenario:
    data = study_dict(**changes)
    data.pop("name"), data.pop("baseline"), data.pop("replications")
    return Scenario.model_validate(data)


DISAGG = {
    "kind": "disaggregated", "prefill_gpus": 2, "prefill_tensor_parallel": 2, "decode_gpus": 2,
    "decode_pipeline_parallel": 2, "max_batch_size": 256, "prefill_max_batch_size": 128,
    "decode_max_batch_size": 1024,
}  # fmt: skip
PROFILE = dict(
    engine="batched", model={"preset": "opt-13b"}, gpu={"preset": "a100-80gb"},
    step_time={"model": "profile", "preset": "distserve"},
)  # fmt: skip


def test_prefill_and_decode_limits_and_a_two_stage_decode_pipeline() -> None:
    sc = scenario(architectures={"d": DISAGG}, **PROFILE)
    plan = serving.configure(sc, sc.architectures["d"])
    prefill, decode = plan.pools["prefill"], plan.pools["decode"]
    assert (prefill.max_batch_size, decode.max_batch_size) == (128, 1024)
    # tp 1 x pp 2 on 2 GPUs: one instance with both stages' KV (DistServe's table: 163,008
    # tokens), each step the tp-1 profile with the preset's pipelined overhead (2 ms, not 6).
    assert (decode.instances, decode.pipeline_parallel) == (1, 2)
    assert decode.kv_capacity_tokens == 163_008
    assert decode.step == profile_table("distserve")["opt-13b"][1].__class__(
        *(getattr(profile_table("distserve")["opt-13b"][1], f) for f in
          ("prefill", "decode_small", "decode_large", "threshold")),
        0.002, PROFILE_OVERHEAD["distserve"][1],
    )  # fmt: skip
    assert PROFILE_PIPELINE_OVERHEAD_S["distserve"] == 0.002
    assert prefill.step.overhead_s == 0.006  # the prefill instance is not pipelined


def test_the_pipelined_overhead_is_the_presets_and_an_explicit_one_wins() -> None:
    """decode_pipeline_parallel 1: the distserve preset's 6 ms; 2: its pipelined 2 ms; an
    explicit step_time.overhead_s (here 0.25 s) applies to every pool, pipelined or not; the vllm
    preset has no pipelined value and keeps its 5 ms."""
    one = {**DISAGG, "decode_pipeline_parallel": 1}
    cases = [
        (one, PROFILE, 0.006),
        (DISAGG, PROFILE, 0.002),
        (DISAGG, {**PROFILE, "step_time": {**PROFILE["step_time"], "overhead_s": 0.25}}, 0.25),
        (DISAGG, {**PROFILE, "step_time": {"model": "profile", "preset": "vllm"}}, 0.005),
    ]
    for arch, common, overhead in cases:
        sc = scenario(architectures={"d": arch}, **common)
        step = serving.configure(sc, sc.architectures["d"]).pools["decode"].step
        assert step.overhead_s == overhead


def test_max_prefill_tokens_is_for_unchunked_steps_only() -> None:
    arch = {"kind": "monolithic", "gpus": 1, "max_prefill_tokens": 4096}
    sc = scenario(architectures={"m": arch}, **PROFILE)
    assert serving.configure(sc, sc.architectures["m"]).pools["gpu"].prefill_cap == 4096
    with pytest.raises(ValueError, match="max_prefill_tokens caps unchunked prefill steps"):
        scenario(architectures={"m": {**arch, "chunked_prefill_tokens": 512}}, **PROFILE)


def test_decode_gpus_must_fill_whole_pipelines() -> None:
    with pytest.raises(ValueError, match="decode_gpus \\(3\\) must be a multiple"):
        scenario(architectures={"d": {**DISAGG, "decode_gpus": 3}}, **PROFILE)


def test_profile_steps_add_the_per_iteration_overhead() -> None:
    """A decode step of 10 sequences, 5,000 context tokens: a + b K + c B (ms) + overhead."""
    fit = ProfileFit((1.0, 0.0, 0.0), (8.0, 0.001, 0.05), (9.0, 0.001, 0.05), 100, 0.006, 1e-7)
    expected = (8.0 + 0.001 * 5000 + 0.05 * 10) * 1e-3 + 0.006 + 1e-7 * 5000
    assert fit.step_s(0, 0.0, 0, 10, 5000) == pytest.approx(expected, rel=1e-12)
    sc = scenario(
        architectures={"m": {"kind": "monolithic", "gpus": 1}},
        **{**PROFILE, "step_time": {"model": "profile", "preset": "vllm", "overhead_s": 0.25}},
    )
    step = serving.configure(sc, sc.architectures["m"]).pools["gpu"].step
    assert (step.overhead_s, step.overhead_per_token_s) == (0.25, PROFILE_OVERHEAD["vllm"][1])


def test_gpu_step_overhead_is_refused_where_it_would_be_ignored() -> None:
    sc = scenario(
        architectures={"m": {"kind": "monolithic", "gpus": 1}},
        **{**PROFILE, "gpu": {"preset": "a100-80gb", "step_overhead_s": 0.5}},
    )
    with pytest.raises(ValueError, match="^gpu.step_overhead_s: applies to the roofline"):
        serving.check(sc)  # the plan's serving check (the spec itself imports no engine)


def test_kv_reserved_gb_sizes_the_cache_from_memory_as_vllm_does() -> None:
    """OPT-13B (12.85e9 params, 2 bytes: 25.7 GB; KV 2 x 40 layers x 40 heads x 128 x 2 bytes =
    819,200 bytes a token) on A100-80GB at memory_fraction 0.95 with 4.1 GB a GPU reserved:
    tp 1: (80 x 0.95 - 4.1) GB - 25.7 GB = 46.2e9 bytes -> 56,396 tokens, 56,384 in 16-token
    blocks; tp 2: 2 x 71.9 GB - 25.7 GB = 118.1e9 bytes -> 144,165 tokens. Without the field
    the profile preset's DistServe table stays (66,144 tokens at tp 1)."""
    gpu = {"preset": "a100-80gb", "memory_fraction": 0.95}
    base = {"kind": "monolithic", "gpus": 2, "scheduler": "vllm"}
    cases = [({"kv_reserved_gb": 4.1}, 56_384), ({"kv_reserved_gb": 4.1, "tensor_parallel": 2},
             144_160), ({}, 66_144)]  # fmt: skip
    for fields, tokens in cases:
        sc = scenario(architectures={"m": {**base, **fields}}, **{**PROFILE, "gpu": gpu})
        assert (
            serving.configure(sc, sc.architectures["m"]).pools["gpu"].kv_capacity_tokens == tokens
        )
    sc = scenario(architectures={"m": {**base, "kv_reserved_gb": 4.1}}, **{**PROFILE, "gpu": gpu})
    figures = serving.derived_figures(sc)["architectures"]["m"]["gpu"]
    assert figures["kv_capacity_tokens"] == 56_396  # before rounding to blocks
    assert figures["kv_capacity_source"] == "memory formula, 4.1 GB a GPU reserved"
    # a reserve that leaves no room for KV is the usual one-line error
    with pytest.raises(ValueError, match="leave no KV cache"):
        sc = scenario(architectures={"m": {**base, "kv_reserved_gb": 60.0}}, **PROFILE)
        serving.check(sc)


def test_the_pipelined_overhead_is_part_of_the_id_of_pipelined_scenarios_only(monkeypatch) -> None:  # noqa: ANN001
    """Rows simulated with another pipelined overhead are never reused: refitting it changes the
    scenario id of a pp-2 scenario under the preset, not that of a pp-1 one or of one with an
    explicit overhead_s."""
    from distsim.runner.plan import scenario_id
    from distsim.sim import step_time

    explicit = {**PROFILE, "step_time": {**PROFILE["step_time"], "overhead_s": 0.004}}
    cases = {
        "pp2": scenario(architectures={"d": DISAGG}, **PROFILE),
        "pp1": scenario(architectures={"d": {**DISAGG, "decode_pipeline_parallel": 1}}, **PROFILE),
        "explicit": scenario(architectures={"d": DISAGG}, **explicit),
    }
    before = {k: scenario_id(sc) for k, sc in cases.items()}
    monkeypatch.setitem(step_time.PROFILE_PIPELINE_OVERHEAD_S, "distserve", 0.003)
    after = {k: scenario_id(sc) for k, sc in cases.items()}
    assert before["pp2"] != after["pp2"]
    assert (before["pp1"], before["explicit"]) == (after["pp1"], after["explicit"])
