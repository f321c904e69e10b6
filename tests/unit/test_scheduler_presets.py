"""Scheduler presets named after the systems they model: each fills the documented values (written
out here from vLLM's engine arguments and DistServe's README, not read from the code's table), a
field given explicitly wins, a preset of the other architecture kind is a one-line error, and
the default (`custom`) changes nothing, down to the scenario id."""

from __future__ import annotations

from distsim_testkit import invoke, one_line_error, scenario, study_dict, write_spec

from distsim.runner.plan import scenario_id
from distsim.sim import serving

PROFILE = dict(
    engine="batched", model={"preset": "opt-13b"}, gpu={"preset": "a100-80gb"},
    step_time={"model": "profile", "preset": "distserve"},
)  # fmt: skip
MONO = {"kind": "monolithic", "gpus": 2}
DISAGG = {"kind": "disaggregated", "prefill_gpus": 2, "decode_gpus": 2}


def arch(**fields):
    a = scenario(architectures={"a": fields}, **PROFILE).architectures["a"]
    return a


def test_vllm_preset_is_vllms_default_scheduler_without_chunking() -> None:
    a = arch(**MONO, scheduler="vllm")
    # vLLM: max-num-seqs 256; max-num-batched-tokens max(max_model_len, 2048) = 2048 for OPT-13B
    # (2,048-token context); no chunked prefill; the prefill samples the first token.
    assert (a.max_batch_size, a.max_prefill_tokens, a.chunked_prefill_tokens) == (256, 2048, None)
    assert (a.decode_steps, a.kv_block_tokens) == ("output-1", 16)  # vLLM's block size
    sc = scenario(architectures={"a": {**MONO, "scheduler": "vllm"}}, **PROFILE)
    pool = serving.configure(sc, sc.architectures["a"]).pools["gpu"]
    assert (pool.max_batch_size, pool.prefill_cap, pool.token_budget) == (256, 2048, None)


def test_distserve_preset_is_per_stage_fcfs_with_distserves_limits() -> None:
    a = arch(**DISAGG, scheduler="distserve")
    # DistServe: prefill stage 128 requests / 8,192 tokens per batch, decode stage 1,024
    # requests; the first token counts when the prefill ends.
    assert (a.prefill_max_batch_size, a.prefill_token_budget) == (128, 8192)
    assert a.decode_max_batch_size == 1024
    assert (a.first_token, a.decode_steps, a.kv_block_tokens) == ("prefill", "output-1", 1)
    sc = scenario(architectures={"a": {**DISAGG, "scheduler": "distserve"}}, **PROFILE)
    plan = serving.configure(sc, sc.architectures["a"])
    assert plan.pools["prefill"].max_batch_size == 128
    assert plan.pools["prefill"].token_budget == 8192
    assert plan.pools["decode"].max_batch_size == 1024
    assert plan.first_token == "prefill"


def test_an_explicit_field_wins_over_the_preset() -> None:
    a = arch(**MONO, scheduler="vllm", max_batch_size=1024, max_prefill_tokens=16384)
    assert (a.max_batch_size, a.max_prefill_tokens) == (1024, 16384)
    a = arch(**MONO, scheduler="vllm", decode_steps="output", kv_block_tokens=1)
    assert (a.decode_steps, a.kv_block_tokens, a.max_batch_size) == ("output", 1, 256)
    # chunking given: the preset's unchunked token cap steps aside (the chunk caps every step)
    a = arch(**MONO, scheduler="vllm", chunked_prefill_tokens=512)
    assert (a.chunked_prefill_tokens, a.max_prefill_tokens) == (512, None)
    d = arch(**DISAGG, scheduler="distserve", first_token="decode", prefill_token_budget=4096)
    assert (d.first_token, d.prefill_token_budget, d.prefill_max_batch_size) == (
        "decode",
        4096,
        128,
    )


def test_custom_is_the_default_and_changes_nothing() -> None:
    plain = scenario(architectures={"m": MONO, "d": DISAGG}, **PROFILE)
    named = scenario(
        architectures={
            "m": {**MONO, "scheduler": "custom"},
            "d": {**DISAGG, "scheduler": "custom"},
        },
        **PROFILE,
    )
    assert plain == named
    assert scenario_id(plain) == scenario_id(named)
    m, d = plain.architectures["m"], plain.architectures["d"]
    assert m.scheduler == d.scheduler == "custom"
    assert (m.max_batch_size, m.max_prefill_tokens) == (256, None)
    assert (d.prefill_max_batch_size, d.decode_max_batch_size, d.first_token) == (
        None,
        None,
        "prefill",  # the study's TTFT definition, whose default is the prefill's end
    )


def test_a_preset_of_the_other_kind_is_a_one_line_error(tmp_path) -> None:
    data = study_dict(**PROFILE)
    data["architectures"] = {"a": {**DISAGG, "scheduler": "vllm"}}
    data["baseline"] = "a"
    line = one_line_error(invoke("validate", write_spec(tmp_path / "s.yaml", data)), "scheduler")
    assert "monolithic" in line
