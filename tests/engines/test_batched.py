"""The batched engine against independent truth: the exclusive engine (batch size 1), invariants
checked at every step of a heavily loaded run, the KV-transfer formula, and batching's effect."""

from __future__ import annotations

from collections import Counter, defaultdict
from functools import cache

import numpy as np
import pytest
from distsim_testkit import scenario

from distsim.sim import batched, serving, simpy_exclusive
from distsim.sim.batched import StepRecord
from distsim.sim.replication import routing_draws, simulate
from distsim.sim.timeline import ServiceTimes
from distsim.spec.study import Scenario
from distsim.workload.generate import generate

PREFILL_RATE, DECODE_RATE = 8000.0, 2000.0


def exclusive_like(first_token: str) -> Scenario:
    """Batch size 1, no chunking, zero overhead, linear steps at the exclusive token rates, and
    the exclusive engine's token accounting (`decode_steps: output`: one decode step per output
    token after the prefill)."""
    return scenario(
        engine="batched",
        duration_s=200.0,
        workload={
            "arrival": {"process": "poisson", "rate_rps": 3.0},
            "prompt_tokens": {"dist": "lognormal", "mu": 6.0, "sigma": 0.9, "min": 8},
            "output_tokens": {"dist": "lognormal", "mu": 5.0, "sigma": 1.0, "min": 2},
        },
        step_time={
            "model": "linear", "overhead_s": 0.0, "prefill_tokens_per_s": PREFILL_RATE,
            "decode_base_s": 1.0 / DECODE_RATE,
        },
        architectures={
            "monolithic": {
                "kind": "monolithic", "gpus": 3, "max_batch_size": 1, "decode_steps": "output",
            },
            "disaggregated": {
                "kind": "disaggregated", "prefill_gpus": 2, "decode_gpus": 2,
                "max_batch_size": 1, "first_token": first_token, "decode_steps": "output",
            },
        },
    )  # fmt: skip


@cache
def exclusive_case(first_token: str, routing: str):
    """The scenario, its requests and routing draws, and the SimPy exclusive engine's timeline
    of each architecture with `routing`: computed once for both implementations under test."""
    sc = exclusive_like(first_token)
    req = generate(sc.workload, sc.duration_s, sc.seed, 0)
    route_u = routing_draws(sc.seed, 0, len(req))
    service = ServiceTimes.of(req, sc.gpu)
    archs, refs = {}, {}
    for name, arch in sc.architectures.items():
        archs[name] = arch = arch.model_copy(update={"routing": routing})
        if name == "monolithic":
            refs[name] = simpy_exclusive.run_monolithic(req, arch, service, route_u=route_u)
        else:
            refs[name] = simpy_exclusive.run_disaggregated(req, arch, service, route_u=route_u)
    return sc, req, route_u, archs, refs


@pytest.mark.parametrize("routing", ["central", "round_robin", "random", "least_loaded"])
@pytest.mark.parametrize("first_token", ["decode", "prefill"])
@pytest.mark.parametrize("implementation", ["fast", "simpy"])
def test_batch_size_one_equals_exclusive_engine(
    first_token: str, routing: str, implementation: str
) -> None:
    """One sequence per instance at the exclusive rates is the exclusive engine, for every
    routing (the exclusive engine's routing is itself checked against closed forms in
    tests/statistical/test_routing_theory.py): same requests, same routing draws, same times."""
    sc, req, route_u, archs, refs = exclusive_case(first_token, routing)
    for name, arch in archs.items():
        trace = batched.run(req, serving.configure(sc, arch), None, implementation, route_u)
        ref = refs[name]
        assert (ref.first_token_s - req.arrival_s).max() > 0.5, "load too light to test queueing"
        np.testing.assert_allclose(
            trace.first_token_s - req.arrival_s, ref.first_token_s - req.arrival_s,
            rtol=1e-9, atol=1e-9,
        )  # fmt: skip
        np.testing.assert_allclose(trace.done_s, ref.done_s, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------- invariants under heavy load

HEAVY_WORKLOAD = {
    "arrival": {"process": "poisson", "rate_rps": 6.0},
    "prompt_tokens": {"dist": "lognormal", "mu": 6.2, "sigma": 0.8, "min": 16, "max": 3000},
    "output_tokens": {"dist": "lognormal", "mu": 5.5, "sigma": 0.9, "min": 2, "max": 1500},
}


def heavy(arch: dict, memory_fraction: float = 0.42) -> Scenario:
    """OPT-13B on A100 with a small KV cache (memory_fraction 0.42: about 9,700 tokens per GPU),
    loaded well past what fits, so admissions stop and sequences get preempted."""
    return scenario(
        engine="batched",
        duration_s=120.0,
        warmup_s=10.0,
        workload=HEAVY_WORKLOAD,
        model={"preset": "opt-13b"},
        gpu={"preset": "a100-80gb", "memory_fraction": memory_fraction},
        architectures={"a": arch},
    )


class InvariantChecker:
    """Asserts per-step invariants as the engine runs and tallies tokens for conservation."""

    def __init__(self) -> None:
        self.steps = 0
        self.decoded: Counter[tuple[str, int]] = Counter()
        self.prefilled: Counter[tuple[str, int]] = Counter()
        self.busy_until: dict[tuple[str, int], float] = defaultdict(float)

    def __call__(self, rec: StepRecord) -> None:
        self.steps += 1
        assert rec.kv_used_tokens <= rec.kv_capacity_tokens
        assert 1 <= rec.batch_size <= rec.max_batch_size
        prefill_tokens = sum(c for _, c in rec.prefill_chunks)
        if rec.pool == "gpu" and rec.token_budget is not None:
            assert prefill_tokens + len(rec.decode_ids) <= rec.token_budget
        if rec.pool == "prefill" and len(rec.prefill_chunks) > 1:
            assert prefill_tokens <= rec.token_budget
        assert len(set(rec.decode_ids)) == len(rec.decode_ids)
        key = (rec.pool, rec.instance)
        assert rec.start_s >= self.busy_until[key] - 1e-12, "an instance ran two steps at once"
        self.busy_until[key] = rec.start_s + rec.duration_s
        for rid in rec.decode_ids:
            self.decoded[(rec.pool, rid)] += 1
        for rid, c in rec.prefill_chunks:
            self.prefilled[(rec.pool, rid)] += c


ARCHS = {
    "monolithic-prefill-first": {"kind": "monolithic", "gpus": 2, "max_batch_size": 48},
    "monolithic-chunked": {
        "kind": "monolithic", "gpus": 2, "max_batch_size": 48, "chunked_prefill_tokens": 256,
    },
    "disaggregated": {
        "kind": "disaggregated", "prefill_gpus": 1, "decode_gpus": 1, "max_batch_size": 48,
        "prefill_token_budget": 2048, "kv_link_gb_s": 50,
    },
}  # fmt: skip


@pytest.mark.parametrize("name", list(ARCHS))
def test_invariants_at_every_step_of_a_heavy_run(name: str) -> None:
    sc = heavy(ARCHS[name])
    req = generate(sc.workload, sc.duration_s, sc.seed, 0)
    plan = serving.configure(sc, sc.architectures["a"])
    check = InvariantChecker()
    trace = batched.run(req, plan, checker=check)
    stats = trace.serving
    assert stats is not None
    assert check.steps > 1000
    assert stats.preemptions > 0, "the run should be heavy enough to preempt"
    # Every request finishes, after it arrived, with its first token in between.
    assert np.isfinite(trace.done_s).all()
    assert (trace.first_token_s >= req.arrival_s).all()
    assert (trace.done_s >= trace.first_token_s).all()
    # Token conservation: each output token comes from a decode iteration or from the end of a
    # prefill (output-1 accounting: the first prefill samples the first token, and each prefill
    # recomputing a preempted sequence samples its next one); prefill work is the prompts plus
    # exactly the recomputed tokens.
    decode_pool = "gpu" if "gpu" in plan.pools else "decode"
    decoded = np.array([check.decoded[(decode_pool, i)] for i in range(len(req))])
    from_prefills = req.output_tokens - decoded
    assert (from_prefills >= 1).all()
    assert from_prefills.sum() <= len(req) + stats.preemptions
    total_prefill = sum(check.prefilled.values())
    assert total_prefill == int(req.prompt_tokens.sum()) + stats.recomputed_tokens
    if "prefill" in plan.pools:
        prefilled = np.array([check.prefilled[("prefill", i)] for i in range(len(req))])
        np.testing.assert_array_equal(prefilled, req.prompt_tokens)
    assert 0 < stats.kv_use_mean[decode_pool] <= 1


# ---------------------------------------------------------------- KV transfers


def test_kv_transfer_time_and_no_overlap_per_link() -> None:
    arch = {
        "kind": "disaggregated", "prefill_gpus": 2, "decode_gpus": 2, "kv_link_gb_s": 2.0,
        "max_batch_size": 64,
    }  # fmt: skip
    sc = heavy(arch, memory_fraction=0.9)
    req = generate(sc.workload, 60.0, sc.seed, 0)
    trace = batched.run(req, serving.configure(sc, sc.architectures["a"]))
    log = trace.serving.transfers
    assert len(log.request) >= len(req)  # every request moved once (recomputes move nothing)
    expected = req.prompt_tokens[log.request] * 819_200 / 2.0e9
    np.testing.assert_allclose(log.end_s - log.start_s, expected, rtol=1e-12)
    queued = 0
    for link in np.unique(log.link):
        on = np.flatnonzero(log.link == link)
        order = on[np.argsort(log.start_s[on], kind="stable")]
        gaps = log.start_s[order][1:] - log.end_s[order][:-1]
        assert (gaps >= -1e-12).all(), "two transfers overlapped on one link"
        queued += int((np.abs(gaps) < 1e-12).sum())
    assert queued > 0, "some transfers should have queued behind another"


# ---------------------------------------------------------------- batching helps


def test_batching_keeps_decoding_up_where_one_at_a_time_cannot() -> None:
    """Same load, same hardware (OPT-13B, A100): decoding one request at a time (the exclusive
    engine at the preset's derived rates) cannot keep up, so each output token waits behind
    whole requests; with max_batch_size 64 the mean TPOT stays near one decode step and the
    per-token latency end to end is far below the exclusive engine's."""
    workload = {
        "arrival": {"process": "poisson", "rate_rps": 1.5},
        "prompt_tokens": {"dist": "constant", "value": 512},
        "output_tokens": {"dist": "constant", "value": 128},
    }
    common = dict(
        duration_s=120.0, warmup_s=10.0, workload=workload,
        model={"preset": "opt-13b"}, gpu={"preset": "a100-80gb"},
    )  # fmt: skip
    batched_sc = scenario(
        engine="batched",
        architectures={"m": {"kind": "monolithic", "gpus": 2, "max_batch_size": 64}},
        **common,
    )
    exclusive_sc = scenario(architectures={"m": {"kind": "monolithic", "gpus": 2}}, **common)
    b = simulate(batched_sc, "m").result
    e = simulate(exclusive_sc, "m").result
    decode_rate = serving.token_rates(exclusive_sc).decode_tokens_per_s
    assert e.pools["gpu"].offered_load > 1.5  # 1.5 rps x (512/9105 + 128/45.4) s / 2 GPUs
    single_step_s = 1.0 / decode_rate
    assert b.tpot_mean_s < 2 * single_step_s
    assert b.e2e_mean_s / 128 < 0.1 * e.e2e_mean_s / 128
    assert b.pools["gpu"].batch_size_mean > 1.5


def test_replication_metrics_of_the_batched_engine() -> None:
    sc = heavy(ARCHS["monolithic-chunked"])
    sc = sc.model_copy(update={"slo": None})
    rep = simulate(sc, "a")
    flat = rep.result.flat()
    for key in ("tpot_mean_s", "tpot_p50_s", "tpot_p90_s", "tpot_p99_s", "preemptions",
                "batch_size_mean_gpu", "kv_use_mean_gpu"):  # fmt: skip
        assert key in flat and np.isfinite(flat[key])
    # TPOT recomputed from the engine's step log: a request's last token is the end of the last
    # step that decoded it; first tokens come from the trace (checked against the exclusive
    # engine above and against the SimPy reference in test_fast_batched.py).
    req = rep.requests
    last_token_s = np.full(len(req), np.nan)

    def record(rec: StepRecord) -> None:
        for rid in rec.decode_ids:
            last_token_s[rid] = rec.start_s + rec.duration_s

    batched.run(req, serving.configure(sc, sc.architectures["a"]), checker=record)
    steps = req.output_tokens.astype(float) - 1
    keep = rep.measured & (steps > 0)
    tpot = (last_token_s[keep] - rep.trace.first_token_s[keep]) / steps[keep]
    assert keep.sum() > 100
    assert flat["tpot_mean_s"] == pytest.approx(tpot.mean(), rel=1e-12)
    assert flat["tpot_p50_s"] == pytest.approx(np.quantile(tpot, 0.5), rel=0.02)


def test_slo_attainment_counts_requests_meeting_both_targets() -> None:
    sc = exclusive_like("decode")
    data = sc.model_dump()
    data["slo"] = {"ttft_s": 0.3, "tpot_s": 0.0006}
    sc = Scenario.model_validate(data)
    rep = simulate(sc, "monolithic")
    ttft = rep.ttft_s
    # Exclusive-like monolithic (batch size 1): after its first token a request decodes alone,
    # one step of 1/2000 s per output token, so TPOT = output / (output - 1) / 2000.
    out = rep.requests.output_tokens[rep.measured].astype(float)
    tpot = out / (out - 1) / DECODE_RATE
    ok = (ttft <= 0.3) & (tpot <= 0.0006)
    assert 0 < ok.mean() < 1
    assert rep.result.slo_attainment == pytest.approx(ok.mean())
