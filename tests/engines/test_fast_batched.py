"""The fast batched engine against the SimPy reference: the same trace, bit for bit.

Independent truth here is the reference model (`distsim.sim.batched_simpy`, one SimPy process
per instance). For every scenario both engines run on the same requests and must agree exactly
(not to a tolerance): every request's first-token and done times, per-pool waits and busy times,
preemptions, recomputed tokens, batch-size and KV-use means, the KV-transfer log, and the
sequence of StepRecords the checker hook receives. Scenarios cover both architectures, chunked
and unchunked prefill, KV pressure with preemptions, tensor parallelism, queued KV links,
zero-time transfers, KV blocks of 16 tokens, max_batch_size 1, all three step-time models, the too-big error, and
hypothesis-generated small cases whose arrivals and step times sit on a coarse binary grid, so
that simultaneous events (the tie-breaking order) are the common case rather than the exception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pytest
from distsim_testkit import scenario
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distsim.errors import SimulationError
from distsim.sim import batched, batched_simpy, fast_batched, serving
from distsim.sim.batched import StepRecord
from distsim.sim.replication import routing_draws, simulate
from distsim.sim.serving import PoolConfig, ServingConfig
from distsim.sim.step_time import Linear, Roofline, profile_table
from distsim.sim.timeline import Timeline
from distsim.spec.hardware import GPU_PRESETS, MODEL_PRESETS
from distsim.workload.generate import Requests, generate


def assert_identical(fast: Timeline, ref: Timeline) -> None:
    """Exact equality of everything the engines return (NaN equals NaN)."""
    np.testing.assert_array_equal(fast.first_token_s, ref.first_token_s, strict=True)
    np.testing.assert_array_equal(fast.done_s, ref.done_s, strict=True)
    assert list(fast.pools) == list(ref.pools)
    for name in ref.pools:
        assert fast.pools[name].gpus == ref.pools[name].gpus
        np.testing.assert_array_equal(fast.pools[name].wait_s, ref.pools[name].wait_s, strict=True)
        np.testing.assert_array_equal(fast.pools[name].busy_s, ref.pools[name].busy_s, strict=True)
    f, r = fast.serving, ref.serving
    assert (f.preemptions, f.recomputed_tokens) == (r.preemptions, r.recomputed_tokens)
    # repr: exact floats, and nan compares equal to nan
    assert repr(f.batch_size_mean) == repr(r.batch_size_mean)
    assert repr(f.kv_use_mean) == repr(r.kv_use_mean)
    for field in ("request", "link", "start_s", "end_s"):
        np.testing.assert_array_equal(
            getattr(f.transfers, field), getattr(r.transfers, field), strict=True
        )


def run_both(
    requests: Requests, plan: ServingConfig, route_u: np.ndarray | None = None
) -> tuple[Timeline, list[StepRecord]]:
    """Both engines with a recording checker; asserts identical traces and step records."""
    ref_steps: list[StepRecord] = []
    fast_steps: list[StepRecord] = []
    ref = batched_simpy.run(requests, plan, ref_steps.append, route_u)
    fast = fast_batched.run(requests, plan, fast_steps.append, route_u)
    assert_identical(fast, ref)
    assert len(fast_steps) == len(ref_steps)
    assert fast_steps == ref_steps
    return ref, ref_steps


# ---------------------------------------------------------------- scenarios from specs

DISTSERVE = dict(
    engine="batched",
    duration_s=60.0,
    warmup_s=5.0,
    model={"preset": "opt-13b"},
    gpu={"preset": "a100-80gb"},
    step_time={"model": "profile", "preset": "distserve"},
    workload={
        "arrival": {"process": "poisson", "rate_rps": 10.0},
        "prompt_tokens": {"dist": "lognormal", "mu": 6.158, "sigma": 0.4, "min": 16, "max": 2048},
        "output_tokens": {"dist": "lognormal", "mu": 4.034, "sigma": 0.5, "min": 2, "max": 512},
    },
)  # fmt: skip

# OPT-13B on A100 with a small KV cache (memory_fraction 0.42: ~9,700 tokens per GPU) and long
# outputs, loaded past what fits: admissions stop and sequences get preempted.
HEAVY = dict(
    engine="batched",
    duration_s=45.0,
    warmup_s=5.0,
    model={"preset": "opt-13b"},
    gpu={"preset": "a100-80gb", "memory_fraction": 0.42},
    workload={
        "arrival": {"process": "poisson", "rate_rps": 6.0},
        "prompt_tokens": {"dist": "lognormal", "mu": 6.2, "sigma": 0.8, "min": 16, "max": 3000},
        "output_tokens": {"dist": "lognormal", "mu": 5.5, "sigma": 0.9, "min": 2, "max": 1500},
    },
)  # fmt: skip

MONO = {"kind": "monolithic", "gpus": 2, "max_batch_size": 48}
CHUNKED = {"kind": "monolithic", "gpus": 2, "max_batch_size": 48, "chunked_prefill_tokens": 256}
DISAGG = {
    "kind": "disaggregated", "prefill_gpus": 1, "decode_gpus": 1, "max_batch_size": 48,
    "prefill_token_budget": 2048, "kv_link_gb_s": 50,
}  # fmt: skip

CASES = {
    # the benchmark's study (measured profile), both architectures
    "distserve-monolithic": (DISTSERVE, {"kind": "monolithic", "gpus": 2, "max_batch_size": 128}),
    "distserve-disaggregated": (
        DISTSERVE,
        {
            "kind": "disaggregated", "prefill_gpus": 1, "decode_gpus": 1, "max_batch_size": 128,
            "prefill_token_budget": 4096, "kv_link_gb_s": 25, "first_token": "prefill",
        },
    ),
    # KV pressure with preemptions and recompute (roofline step times)
    "heavy-prefill-first": (HEAVY, MONO),
    "heavy-chunked": (HEAVY, CHUNKED),
    "heavy-disaggregated": (HEAVY, DISAGG),
    "heavy-disaggregated-first-token-decode": (HEAVY, {**DISAGG, "first_token": "decode"}),
    # block-granular KV (vLLM's 16-token blocks) under KV pressure
    "heavy-blocks": (HEAVY, {**MONO, "kv_block_tokens": 16}),
    "heavy-disaggregated-blocks": (HEAVY, {**DISAGG, "kv_block_tokens": 16}),
    # vLLM's admission watermark on top (5% of the blocks kept free by admissions)
    "heavy-blocks-watermark": (HEAVY, {**MONO, "kv_block_tokens": 16, "kv_watermark": 0.05}),
    # tensor parallelism (roofline with its communication term; the profile at TP 2)
    "tensor-parallel-roofline": (
        HEAVY, {"kind": "monolithic", "gpus": 4, "tensor_parallel": 2, "max_batch_size": 64},
    ),
    "tensor-parallel-profile": (
        DISTSERVE,
        {
            "kind": "disaggregated", "prefill_gpus": 2, "decode_gpus": 2,
            "prefill_tensor_parallel": 2, "decode_tensor_parallel": 1, "max_batch_size": 64,
        },
    ),
    # slow KV links shared by queued transfers, several prefill and decode instances
    "queued-links": (
        {**HEAVY, "gpu": {"preset": "a100-80gb", "memory_fraction": 0.9}},
        {
            "kind": "disaggregated", "prefill_gpus": 2, "decode_gpus": 3, "kv_link_gb_s": 2.0,
            "max_batch_size": 32, "prefill_token_budget": 1024,
        },
    ),
    # one sequence per instance
    "batch-size-one": (DISTSERVE, {"kind": "monolithic", "gpus": 3, "max_batch_size": 1}),
    "batch-size-one-disaggregated": (
        {**DISTSERVE, "workload": {**DISTSERVE["workload"], "arrival": {"process": "poisson",
                                                                        "rate_rps": 2.0}}},
        {"kind": "disaggregated", "prefill_gpus": 1, "decode_gpus": 2, "max_batch_size": 1},
    ),
    # the vLLM profile and the linear model (no model section: unlimited KV, free transfers)
    "vllm-profile-chunked": (
        {**DISTSERVE, "step_time": {"model": "profile", "preset": "vllm"}},
        {"kind": "monolithic", "gpus": 2, "max_batch_size": 64, "chunked_prefill_tokens": 512},
    ),
    "linear-no-model": (
        {
            **DISTSERVE, "model": None, "gpu": {"prefill_tokens_per_s": 8000,
                                                 "decode_tokens_per_s": 50},
            "step_time": {"model": "linear", "overhead_s": 0.002, "prefill_tokens_per_s": 9000,
                          "decode_base_s": 0.02, "decode_per_seq_s": 0.0004,
                          "kv_token_s": 1e-7},
        },
        {"kind": "disaggregated", "prefill_gpus": 2, "decode_gpus": 2, "max_batch_size": 32},
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_fast_engine_equals_the_simpy_reference(name: str) -> None:
    common, arch = CASES[name]
    sc = scenario(**{k: v for k, v in common.items() if v is not None}, architectures={"a": arch})
    requests = generate(sc.workload, sc.duration_s, sc.seed, 0)
    plan = serving.configure(sc, sc.architectures["a"])
    ref, steps = run_both(requests, plan)
    assert len(steps) > 100 and np.isfinite(ref.done_s).all()
    if name.startswith("heavy"):
        assert ref.serving.preemptions > 0, "the case should exercise preemption"
    if name == "queued-links":
        log = ref.serving.transfers
        back_to_back = 0
        for link in np.unique(log.link):
            on = np.flatnonzero(log.link == link)
            order = on[np.argsort(log.start_s[on], kind="stable")]
            back_to_back += int((log.start_s[order][1:] == log.end_s[order][:-1]).sum())
        assert back_to_back > 0, "some transfers should have waited for the link"
    if name == "linear-no-model":
        log = ref.serving.transfers
        assert len(log.request) == len(requests) and (log.start_s == log.end_s).all()


ROUTED_CASES = {
    "heavy-chunked": CASES["heavy-chunked"],
    "heavy-disaggregated": (HEAVY, {**DISAGG, "prefill_gpus": 2, "decode_gpus": 2}),
    "queued-links": CASES["queued-links"],
}


@pytest.mark.parametrize("routing", ["round_robin", "random", "least_loaded"])
@pytest.mark.parametrize("name", list(ROUTED_CASES))
def test_fast_engine_equals_the_simpy_reference_when_routed(name: str, routing: str) -> None:
    """Routing across instances (a queue per instance; preempted requests back to the front
    of their own instance's queue), under KV pressure and on shared links."""
    common, arch = ROUTED_CASES[name]
    sc = scenario(**common, architectures={"a": {**arch, "routing": routing}})
    requests = generate(sc.workload, sc.duration_s, sc.seed, 0)
    plan = serving.configure(sc, sc.architectures["a"])
    assert plan.routing == routing
    ref, steps = run_both(requests, plan, routing_draws(sc.seed, 0, len(requests)))
    assert len(steps) > 100 and np.isfinite(ref.done_s).all()
    if name.startswith("heavy"):
        assert ref.serving.preemptions > 0, "the case should exercise preemption"
    central = batched_simpy.run(requests, serving.configure(sc, sc.architectures["a"].model_copy(
        update={"routing": "central"})))  # fmt: skip
    assert not np.array_equal(ref.done_s, central.done_s), "routing should change the run"


def test_simulate_gives_the_same_metrics_with_either_implementation() -> None:
    """Through the public entry point: every metric of the replication, exactly."""
    sc = scenario(**DISTSERVE, architectures={"m": CHUNKED, "d": DISAGG})
    sc = sc.model_copy(update={"slo": None})
    for arch in ("m", "d"):
        fast = simulate(sc, arch, 1).result.flat()
        ref = simulate(sc, arch, 1, implementation="simpy").result.flat()
        assert repr(fast) == repr(ref)


# ---------------------------------------------------------------- ties on a binary grid


def grid_plan(
    disaggregated: bool, instances: tuple[int, int], max_batch_size: int, capacity: float,
    budget: int | None, step: object, tensor_parallel: int, kv_bytes_per_token: float,
    link_gb_s: float, first_token: str, decode_steps: str = "output-1",
    prefill_cap: int | None = None, kv_block_tokens: int = 1, routing: str = "central",
    reserve: int = 0,
) -> ServingConfig:  # fmt: skip
    def pool(name: str, count: int, token_budget: int | None) -> PoolConfig:
        return PoolConfig(
            name=name, gpus=count * tensor_parallel, tensor_parallel=tensor_parallel,
            instances=count, max_batch_size=max_batch_size, kv_capacity_tokens=capacity,
            step=step, token_budget=token_budget, kv_block_tokens=kv_block_tokens,
            kv_admit_reserve_tokens=reserve,
        )  # fmt: skip

    if disaggregated:
        pools = {
            "prefill": pool("prefill", instances[0], budget),
            "decode": pool("decode", instances[1], None),
        }
        return ServingConfig(
            pools, kv_bytes_per_token, link_gb_s, first_token, decode_steps, routing
        )
    gpu = replace(pool("gpu", instances[0], budget), prefill_cap=prefill_cap)
    return ServingConfig({"gpu": gpu}, kv_bytes_per_token, None, "prefill", decode_steps, routing)


# Step times and arrival gaps that are exact binary fractions, so that step ends, transfers
# and arrivals coincide exactly and SimPy's tie-breaking decides what happens next.
GRID_STEPS = [
    Linear(0.0, 64.0, 0.25, 0.0, 0.0),
    Linear(0.125, 128.0, 0.0625, 0.03125, 0.0),
    Linear(0.0, 32.0, 0.5, 0.0, 0.0078125),
]


@st.composite
def grid_cases(draw: st.DrawFn) -> tuple[Requests, ServingConfig, np.ndarray]:
    n = draw(st.integers(1, 30))
    unit = draw(st.sampled_from([0.125, 0.25, 1.0]))
    gaps = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    arrival = np.cumsum(gaps).astype(np.float64) * unit
    prompt = np.array(draw(st.lists(st.integers(1, 40), min_size=n, max_size=n)), np.int64)
    output = np.array(draw(st.lists(st.integers(1, 16), min_size=n, max_size=n)), np.int64)
    disaggregated = draw(st.booleans())
    step = draw(
        st.sampled_from(
            [*GRID_STEPS, profile_table("distserve")["opt-13b"][1],
             replace(profile_table("vllm")["opt-13b"][1], overhead_s=0.125,
                     overhead_per_token_s=2.0**-10),
             Roofline(MODEL_PRESETS["llama-2-7b"], GPU_PRESETS["l40s"], 2)]
        )
    )  # fmt: skip
    plan = grid_plan(
        disaggregated=disaggregated,
        instances=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        max_batch_size=draw(st.integers(1, 6)),
        capacity=draw(st.sampled_from([math.inf, 48.0, 64.0, 100.0, 300.0])),
        budget=draw(st.sampled_from([None, 8, 16, 40])),
        step=step,
        tensor_parallel=draw(st.sampled_from([1, 2])),
        kv_bytes_per_token=draw(st.sampled_from([0.0, 1.25e8, 819_200.0])),
        link_gb_s=draw(st.sampled_from([1.0, 25.0])),
        first_token=draw(st.sampled_from(["prefill", "decode"])),
        decode_steps=draw(st.sampled_from(["output-1", "output"])),
        prefill_cap=draw(st.sampled_from([None, 16, 40])),
        kv_block_tokens=draw(st.sampled_from([1, 1, 4, 16])),
        routing=draw(st.sampled_from(["central", "round_robin", "random", "least_loaded"])),
        reserve=draw(st.sampled_from([0, 0, 4, 16])),
    )
    # routing draws on a grid of eighths, so that u x instances lands on boundaries too
    route_u = np.array(draw(st.lists(st.integers(0, 7), min_size=2 * n, max_size=2 * n)))
    return Requests(arrival, prompt, output), plan, route_u.reshape(n, 2) / 8.0


def outcome(engine, requests: Requests, plan: ServingConfig, route_u=None):  # noqa: ANN001, ANN201
    steps: list[StepRecord] = []
    try:
        return engine.run(requests, plan, steps.append, route_u), None, steps
    except SimulationError as err:
        return None, str(err), steps


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grid_cases())
def test_small_cases_with_ties_equal_the_reference(
    case: tuple[Requests, ServingConfig, np.ndarray],
) -> None:
    requests, plan, route_u = case
    ref, ref_error, ref_steps = outcome(batched_simpy, requests, plan, route_u)
    fast, fast_error, fast_steps = outcome(fast_batched, requests, plan, route_u)
    assert fast_error == ref_error
    assert fast_steps == ref_steps
    if ref is not None:
        assert_identical(fast, ref)


def test_the_grid_cases_do_produce_ties() -> None:
    """The property above is only a test of tie-breaking if ties happen: here two instances
    finish steps at the same instant as arrivals, and transfers end as steps end."""
    requests = Requests(
        np.repeat(np.arange(10) * 0.25, 3), np.full(30, 16, np.int64), np.full(30, 4, np.int64)
    )
    plan = grid_plan(True, (2, 2), 4, 100.0, 32, GRID_STEPS[0], 1, 1.25e8, 1.0, "decode")
    ref, steps = run_both(requests, plan)
    starts = [s.start_s for s in steps]
    assert len(starts) - len(set(starts)) > 5, "steps of different instances should coincide"
    ends = set(ref.serving.transfers.end_s.tolist())
    assert ends & {s.start_s for s in steps}, "transfers should end when steps start"


def test_a_decode_instance_that_preempts_its_last_sequence_waits_for_its_transfers() -> None:
    """Found by the property above: a decode instance whose KV is mostly reserved for transfers
    in flight preempts its only running sequence. The first version then took an empty step and
    divided by zero; both engines now go back to waiting, and every request finishes."""
    requests = Requests(
        np.zeros(7), np.array([1, 1, 12, 1, 1, 27, 1]), np.array([1, 7, 1, 1, 1, 1, 1])
    )
    plan = grid_plan(
        True, (1, 1), 5, 48.0, None, GRID_STEPS[1], 1, 1.25e8, 1.0, "prefill", "output"
    )  # (with output-1 the one-token requests end at their prefill and nothing is preempted)
    ref, _ = run_both(requests, plan)
    assert ref.serving.preemptions > 0 and np.isfinite(ref.done_s).all()


# ---------------------------------------------------------------- errors, fallback, step times


@pytest.mark.parametrize("disaggregated", [False, True])
def test_a_request_too_big_fails_the_same_way(disaggregated: bool) -> None:
    requests = Requests(np.array([0.0, 0.5, 1.0]), np.array([10, 90, 10]), np.array([5, 5, 5]))
    plan = grid_plan(disaggregated, (1, 1), 4, 64.0, None, GRID_STEPS[0], 1, 0.0, 1.0, "prefill")
    _, ref_error, ref_steps = outcome(batched_simpy, requests, plan)
    _, fast_error, fast_steps = outcome(fast_batched, requests, plan)
    assert ref_error is not None and "request 1 needs" in ref_error
    assert fast_error == ref_error and fast_steps == ref_steps


@dataclass(frozen=True)
class HalfLinear:
    """A step-time model the compiled engine does not know: it must fall back, not guess."""

    inner: Linear

    def step_s(self, *shape: float) -> float:
        return 0.5 * self.inner.step_s(*shape)


def test_an_unknown_step_model_falls_back_to_the_reference() -> None:
    requests = Requests(np.arange(20) * 0.1, np.full(20, 30, np.int64), np.full(20, 6, np.int64))
    plan = grid_plan(False, (2, 1), 4, 300.0, 16, HalfLinear(GRID_STEPS[1]), 1, 0.0, 1.0, "prefill")
    ref, _ = run_both(requests, plan)
    doubled = grid_plan(False, (2, 1), 4, 300.0, 16, GRID_STEPS[1], 1, 0.0, 1.0, "prefill")
    assert not np.array_equal(batched.run(requests, doubled).done_s, ref.done_s)


STEP_MODELS = [
    *GRID_STEPS,
    Linear(0.0031, 9104.7, 0.0213, 0.00017, 3.3e-7),
    *[profile_table(p)[m][tp] for p in ("distserve", "vllm") for m, tps in
      profile_table(p).items() for tp in tps],
    replace(profile_table("distserve")["opt-13b"][2], overhead_s=0.0021,
            overhead_per_token_s=1.3e-7),
    *[Roofline(MODEL_PRESETS[m], GPU_PRESETS[g], tp) for m in ("opt-13b", "llama-3-70b")
      for g in ("a100-80gb", "h100-sxm", "l40s") for tp in (1, 2, 4)],
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(STEP_MODELS),
    st.integers(0, 20_000),
    st.integers(0, 3_000),
    st.integers(0, 300),
    st.integers(0, 2_000_000),
    st.integers(1, 4),
)
def test_compiled_step_times_equal_the_models_bit_for_bit(
    model: object, prefill: int, done: int, decodes: int, context: int, chunks: int
) -> None:
    """`_step_s` evaluates each model's formula with the same operations in the same order."""
    code, prm, threshold = fast_batched._step_params(model)
    sq = 0.0
    for c in np.array_split(np.arange(prefill), chunks):  # a prompt's chunks, as the engine does
        sq += len(c) * len(c) + 2.0 * len(c) * done
    args = (prefill, sq, done * chunks, decodes, context)
    assert fast_batched._step_s(code, prm[None, :], 0, threshold, *args) == model.step_s(*args)
