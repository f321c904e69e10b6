"""Hand-computed timelines of the batched engine's token accounting and pool limits, on both
implementations (the SimPy reference and the compiled engine give the same times).

vLLM and DistServe sample the first token from the prefill's last position, so a request of N
output tokens runs N - 1 decode iterations (`decode_steps: output-1`, the default); the
exclusive engine's accounting runs N (`decode_steps: output`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from distsim.sim import batched
from distsim.sim.metrics import tpot_s
from distsim.sim.serving import PoolConfig, ServingConfig
from distsim.sim.step_time import Linear
from distsim.workload.generate import Requests

# 10 ms for a prefill step of 200 prompt tokens, 20 ms for any decode step.
STEP = Linear(
    overhead_s=0.0, prefill_tokens_per_s=20_000.0, decode_base_s=0.02, decode_per_seq_s=0.0,
    kv_token_s=0.0,
)  # fmt: skip
IMPLEMENTATIONS = ("simpy", "fast")


def requests(arrival: list[float], prompt: list[int], output: list[int]) -> Requests:
    return Requests(
        arrival_s=np.array(arrival, dtype=float),
        prompt_tokens=np.array(prompt, dtype=np.int64),
        output_tokens=np.array(output, dtype=np.int64),
    )


def pool(name: str, max_batch_size: int = 8, budget: int | None = None) -> PoolConfig:
    return PoolConfig(
        name=name, gpus=1, tensor_parallel=1, instances=1, max_batch_size=max_batch_size,
        kv_capacity_tokens=float("inf"), step=STEP, token_budget=budget,
    )  # fmt: skip


def monolithic(decode_steps: str) -> ServingConfig:
    return ServingConfig(
        pools={"gpu": pool("gpu")}, kv_bytes_per_token=0.0, kv_link_gb_s=None,
        first_token="prefill", decode_steps=decode_steps,
    )  # fmt: skip


def disaggregated(decode_steps: str, prefill_mbs: int = 8) -> ServingConfig:
    return ServingConfig(
        pools={"prefill": pool("prefill", prefill_mbs), "decode": pool("decode")},
        kv_bytes_per_token=0.0, kv_link_gb_s=25.0, first_token="prefill",
        decode_steps=decode_steps,
    )  # fmt: skip


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_two_requests_of_two_tokens_run_one_decode_iteration(impl: str) -> None:
    """Two requests of 100 prompt and 2 output tokens at t = 0: one prefill step of both
    (0 -> 0.01 s, the first tokens), one decode step (0.01 -> 0.03 s, the second tokens).
    TTFT 0.01 s, TPOT 0.02 s, E2E 0.03 s, as vLLM and DistServe count."""
    req = requests([0.0, 0.0], [100, 100], [2, 2])
    trace = batched.run(req, monolithic("output-1"), implementation=impl)
    np.testing.assert_allclose(trace.first_token_s, [0.01, 0.01], rtol=1e-12)
    np.testing.assert_allclose(trace.done_s, [0.03, 0.03], rtol=1e-12)
    np.testing.assert_allclose(tpot_s(req, trace), [0.02, 0.02], rtol=1e-12)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_the_exclusive_engines_accounting_runs_one_more_iteration(impl: str) -> None:
    """Same two requests with `decode_steps: output`: two decode steps, done at 0.05 s,
    TPOT 0.04 s (the seed's accounting)."""
    req = requests([0.0, 0.0], [100, 100], [2, 2])
    trace = batched.run(req, monolithic("output"), implementation=impl)
    np.testing.assert_allclose(trace.first_token_s, [0.01, 0.01], rtol=1e-12)
    np.testing.assert_allclose(trace.done_s, [0.05, 0.05], rtol=1e-12)
    np.testing.assert_allclose(tpot_s(req, trace), [0.04, 0.04], rtol=1e-12)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_a_one_token_request_ends_with_its_prefill(impl: str) -> None:
    """Monolithic: a 200-token prompt with 1 output token is done when its prefill ends
    (0.01 s); a second request arriving then starts at once. Disaggregated: the one-token
    request never reaches the decode pool (no KV transfer)."""
    req = requests([0.0, 0.01], [200, 200], [1, 3])
    trace = batched.run(req, monolithic("output-1"), implementation=impl)
    np.testing.assert_allclose(trace.first_token_s, [0.01, 0.02], rtol=1e-12)
    np.testing.assert_allclose(trace.done_s, [0.01, 0.06], rtol=1e-12)
    trace = batched.run(req, disaggregated("output-1"), implementation=impl)
    assert trace.serving.transfers.request.tolist() == [1]
    np.testing.assert_allclose(trace.done_s[0], 0.01, rtol=1e-12)
    np.testing.assert_allclose(trace.first_token_s[1], 0.02, rtol=1e-12)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_prefill_and_decode_batch_limits_are_separate(impl: str) -> None:
    """Disaggregated with a prefill batch of 1 prompt and decode batches of 8: two 200-token
    prompts at t = 0 prefill one after the other (first tokens at 0.01 and 0.02 s) though the
    decode pool could batch both."""
    req = requests([0.0, 0.0], [200, 200], [2, 2])
    trace = batched.run(req, disaggregated("output-1", prefill_mbs=1), implementation=impl)
    np.testing.assert_allclose(trace.first_token_s, [0.01, 0.02], rtol=1e-12)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_unchunked_prefill_steps_respect_the_token_cap(impl: str) -> None:
    """vLLM's max-num-batched-tokens without chunking: three 100-token prompts at t = 0 with a
    cap of 200 tokens: the first prefill step takes two (0 -> 0.01 s), the next the third
    (0.01 -> 0.015 s); without the cap all three go in one step (0 -> 0.015 s)."""
    req = requests([0.0, 0.0, 0.0], [100, 100, 100], [1, 1, 1])
    plan = monolithic("output-1")
    capped = replace(plan, pools={"gpu": replace(plan.pools["gpu"], prefill_cap=200)})
    trace = batched.run(req, capped, implementation=impl)
    np.testing.assert_allclose(trace.first_token_s, [0.01, 0.01, 0.015], rtol=1e-12)
    trace = batched.run(req, plan, implementation=impl)
    np.testing.assert_allclose(trace.first_token_s, [0.015, 0.015, 0.015], rtol=1e-12)
