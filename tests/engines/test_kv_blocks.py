"""Block-granular KV (`kv_block_tokens`), by hand, in the SimPy reference and the compiled engine.

Two requests at t = 0 of 3 prompt and 3 output tokens on one instance holding 12 KV tokens,
linear step time: a prefill of 6 tokens and each decode step take 0.1 s. Token-exact KV: the
prefill emits the first token (0.1 s), two decode iterations follow, both done at 0.3 s, KV
3 + 3 -> 4 + 4 -> 5 + 5, no preemption. 4-token blocks: each holds one block (4 tokens) after the
prefill and the first decode (context 3 -> 4 fills it); the second decode needs a new block for
each, 8 + 8 > 12, so the newest is preempted (recompute) and the other finishes at 0.3 s, freeing
its 8; the preempted one recomputes its context of 5 tokens (5/60 s), whose last position
samples its third and last token: done at 0.3 + 5/60 s, 5 tokens recomputed."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from distsim_testkit import scenario

from distsim.sim import batched_simpy, fast_batched, serving
from distsim.sim.serving import PoolConfig, ServingConfig
from distsim.sim.step_time import Linear
from distsim.workload.generate import Requests

REQUESTS = Requests(np.zeros(2), np.array([3, 3], np.int64), np.array([3, 3], np.int64))


def plan(block: int) -> ServingConfig:
    step = Linear(0.0, 60.0, 0.1, 0.0, 0.0)  # 60 prompt tokens/s; 0.1 s a decode step
    pool = PoolConfig(
        name="gpu", gpus=1, tensor_parallel=1, instances=1, max_batch_size=8,
        kv_capacity_tokens=12.0, step=step, token_budget=None, kv_block_tokens=block,
    )  # fmt: skip
    return ServingConfig({"gpu": pool}, 0.0, None, "prefill", "output-1")


@pytest.mark.parametrize("engine", [batched_simpy, fast_batched])
def test_token_exact_kv_fits_both(engine) -> None:  # noqa: ANN001
    t = engine.run(REQUESTS, plan(1))
    np.testing.assert_allclose(t.first_token_s, [0.1, 0.1])
    np.testing.assert_allclose(t.done_s, [0.3, 0.3])
    assert (t.serving.preemptions, t.serving.recomputed_tokens) == (0, 0)


@pytest.mark.parametrize("engine", [batched_simpy, fast_batched])
def test_four_token_blocks_preempt_the_newest_at_the_block_boundary(engine) -> None:  # noqa: ANN001
    t = engine.run(REQUESTS, plan(4))
    np.testing.assert_allclose(t.first_token_s, [0.1, 0.1])
    np.testing.assert_allclose(t.done_s, [0.3, 0.3 + 5 / 60])
    assert (t.serving.preemptions, t.serving.recomputed_tokens) == (1, 5)


def test_capacity_is_whole_blocks_and_the_vllm_preset_uses_16() -> None:
    common = dict(
        engine="batched", model={"preset": "opt-13b"}, gpu={"preset": "a100-80gb"},
        step_time={"model": "roofline"},
    )  # fmt: skip
    exact = scenario(architectures={"a": {"kind": "monolithic", "gpus": 1}}, **common)
    vllm = scenario(
        architectures={"a": {"kind": "monolithic", "gpus": 1, "scheduler": "vllm"}}, **common
    )
    assert vllm.architectures["a"].kv_block_tokens == 16
    cap = serving.configure(exact, exact.architectures["a"]).pools["gpu"].kv_capacity_tokens
    pool = serving.configure(vllm, vllm.architectures["a"]).pools["gpu"]
    assert pool.kv_block_tokens == 16
    assert pool.kv_capacity_tokens == (cap // 16) * 16


@pytest.mark.parametrize("engine", [batched_simpy, fast_batched])
def test_the_watermark_holds_back_an_admission_not_a_decode(engine) -> None:  # noqa: ANN001
    """vLLM's admission watermark (`kv_watermark`), by hand: the same two requests, 4-token blocks,
    12 tokens (3 blocks), one block (4 tokens) kept free by admissions. The first is admitted at 0
    (4 held + 1 headroom + 4 kept = 9 <= 12); the second is not (4 + 4 + 2 + 4 = 14 > 12) and
    waits. The first prefills alone (3 tokens, 0.05 s), decodes at 0.15 s (context 4, its block
    full) and 0.25 s (a new block: 8 tokens, which the watermark does not restrict): done at 0.25 s.
    The second is then admitted, prefills (0.30 s) and decodes at 0.40 and 0.50 s. No
    preemption."""
    wm = replace(plan(4), pools={"gpu": replace(plan(4).pools["gpu"], kv_admit_reserve_tokens=4)})
    t = engine.run(REQUESTS, wm)
    np.testing.assert_allclose(t.first_token_s, [0.05, 0.30])
    np.testing.assert_allclose(t.done_s, [0.25, 0.50])
    assert (t.serving.preemptions, t.serving.recomputed_tokens) == (0, 0)


def test_the_vllm_preset_keeps_one_percent_of_the_blocks_free() -> None:
    """kv_watermark 0.01 of the vLLM preset: the fidelity runs' 56,384 tokens are 3,524 blocks,
    int(35.24) = 35 blocks = 560 tokens; none without it or without a KV limit."""
    common = dict(
        engine="batched", model={"preset": "opt-13b"},
        gpu={"preset": "a100-80gb", "memory_fraction": 0.95},
        step_time={"model": "profile", "preset": "vllm"},
    )  # fmt: skip
    arch = {"kind": "monolithic", "gpus": 1, "scheduler": "vllm", "kv_reserved_gb": 4.1}
    for fields, tokens in (({}, 560), ({"kv_watermark": 0.0}, 0), ({"scheduler": "custom"}, 0)):
        sc = scenario(architectures={"a": {**arch, **fields}}, **common)
        pool = serving.configure(sc, sc.architectures["a"]).pools["gpu"]
        assert pool.kv_admit_reserve_tokens == tokens
