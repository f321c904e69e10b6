"""Routing across instances in the exclusive engine: the compiled kernels against the SimPy
reference (`distsim.sim.simpy_exclusive.Router`), request by request and bit for bit, plus cases
small enough to work out by hand.

Truth: the SimPy model (one single-GPU resource per instance, the instance chosen when a request
joins the pool) run on the same arrays; the hand cases follow the routing rules as documented.
"""

from __future__ import annotations

import numpy as np
import pytest
from distsim_testkit import make_scenario

from distsim.sim import fast_exclusive, simpy_exclusive
from distsim.sim.replication import routing_draws, simulate
from distsim.sim.timeline import ServiceTimes, Timeline
from distsim.spec.study import Disaggregated, Gpu, Monolithic
from distsim.workload.generate import Requests, generate

GPU = Gpu(prefill_tokens_per_s=8000, decode_tokens_per_s=2000)
ROUTED = ["round_robin", "random", "least_loaded"]


def mono(gpus: int, routing: str) -> Monolithic:
    return Monolithic(kind="monolithic", gpus=gpus, routing=routing)


def disagg(p: int, d: int, routing: str, first_token: str = "decode") -> Disaggregated:
    return Disaggregated(
        kind="disaggregated", prefill_gpus=p, decode_gpus=d, routing=routing,
        first_token=first_token,
    )  # fmt: skip


def run_both(
    requests: Requests, arch: Monolithic | Disaggregated, route_u: np.ndarray | None
) -> tuple[Timeline, Timeline]:
    service = ServiceTimes.of(requests, GPU)
    if isinstance(arch, Monolithic):
        return (
            fast_exclusive.run_monolithic(requests, arch, service, route_u=route_u),
            simpy_exclusive.run_monolithic(requests, arch, service, route_u=route_u),
        )
    return (
        fast_exclusive.run_disaggregated(requests, arch, service, route_u=route_u),
        simpy_exclusive.run_disaggregated(requests, arch, service, route_u=route_u),
    )


def assert_identical(fast: Timeline, ref: Timeline) -> None:
    """Bit for bit: every first-token, done and wait time."""
    np.testing.assert_array_equal(fast.first_token_s, ref.first_token_s)
    np.testing.assert_array_equal(fast.done_s, ref.done_s)
    assert fast.pools.keys() == ref.pools.keys()
    for name, pool in ref.pools.items():
        np.testing.assert_array_equal(fast.pools[name].wait_s, pool.wait_s)
        np.testing.assert_array_equal(fast.pools[name].busy_s, pool.busy_s)


ARCHS = [
    lambda r: mono(4, r),
    lambda r: mono(1, r),
    lambda r: disagg(2, 3, r),
    lambda r: disagg(3, 2, r, "prefill"),
]


@pytest.mark.parametrize("make", ARCHS, ids=["mono4", "mono1", "dis2+3", "dis3+2-prefill"])
@pytest.mark.parametrize("routing", ROUTED)
@pytest.mark.parametrize("rate_rps", [1.0, 2.5])
def test_generated_workload_identical_to_simpy(make, routing: str, rate_rps: float) -> None:
    """Poisson arrivals, lognormal sizes, from light load to overload of the busiest pool."""
    sc = make_scenario(duration_s=300.0, warmup_s=0.0)
    workload = {**sc.workload.model_dump(), "arrival": {"process": "poisson", "rate_rps": rate_rps}}
    sc = make_scenario(duration_s=300.0, warmup_s=0.0, workload=workload)
    requests = generate(sc.workload, sc.duration_s, sc.seed, 2)
    assert len(requests) > 200
    arch = make(routing)
    fast, ref = run_both(requests, arch, routing_draws(sc.seed, 2, len(requests)))
    assert_identical(fast, ref)


def tied_requests(seed: int, n: int, span_s: float) -> Requests:
    """Arrivals on a 0.1 s grid, sizes taking a few values (0.1 s multiples of service)."""
    rng = np.random.default_rng(seed)
    return Requests(
        arrival_s=np.sort(np.round(rng.uniform(0.0, span_s, n), 1)),
        prompt_tokens=rng.choice(np.array([800, 1600]), n),
        output_tokens=rng.choice(np.array([200, 400, 600]), n),
    )


@pytest.mark.parametrize("routing", ROUTED)
@pytest.mark.parametrize("span_s", [30.0, 150.0])
def test_monolithic_ties_identical_to_simpy(routing: str, span_s: float) -> None:
    """Many requests arriving, and GPUs freeing, at the same instant."""
    requests = tied_requests(int(span_s), 300, span_s)
    u = np.random.default_rng(1).random((300, 2))
    fast, ref = run_both(requests, mono(3, routing), u)
    assert_identical(fast, ref)


@pytest.mark.parametrize("routing", ROUTED)
def test_disaggregated_ties_identical_to_simpy(routing: str) -> None:
    """Simultaneous prefill completions: both engines join the decode pool by (completion, start
    of prefill, index)."""
    requests = tied_requests(5, 300, 150.0)
    u = np.random.default_rng(2).random((300, 2))
    fast, ref = run_both(requests, disagg(2, 2, routing), u)
    assert_identical(fast, ref)


# ----------------------------------------------------------------- by hand


def three(arrival: list[float], prompt: list[int], output: list[int]) -> Requests:
    return Requests(
        arrival_s=np.array(arrival), prompt_tokens=np.array(prompt), output_tokens=np.array(output)
    )


def test_round_robin_by_hand() -> None:
    """Two GPUs, requests at 0, 0.1, 0.2 s, 0.5 s prefill + 0.5 s decode each. Round robin sends
    the third to GPU 0 (busy until 1 s) although GPU 1 frees at 1.1 s: it waits 0.8 s. A central
    queue would also start it at 1 s (GPU 0 frees first), so make GPU 0 slower: first request
    1 s + 1 s; then central starts the third on GPU 1 at 1.1 s, round robin on GPU 0 at 2 s."""
    req = three([0.0, 0.1, 0.2], [8000, 4000, 4000], [2000, 1000, 1000])
    for impl in (fast_exclusive, simpy_exclusive):
        service = ServiceTimes.of(req, GPU)
        rr = impl.run_monolithic(req, mono(2, "round_robin"), service)
        np.testing.assert_array_equal(rr.pools["gpu"].wait_s, [0.0, 0.0, 1.8])
        central = impl.run_monolithic(req, mono(2, "central"), service)
        np.testing.assert_allclose(central.pools["gpu"].wait_s, [0.0, 0.0, 0.9], atol=1e-12)


def test_least_loaded_by_hand() -> None:
    """Two GPUs. A (8,000 + 2,000 tokens) at 0 goes to GPU 0, B (800 + 200) at 0.1 s to GPU 1
    (1,000 < 10,000 outstanding); B finishes at 0.3 s, so C at 0.5 s sees GPU 0 with 10,000 and
    GPU 1 with 0 outstanding and goes to GPU 1; D at 0.55 s (C's 1,000 outstanding on GPU 1)
    goes to GPU 1 as well and waits for C."""
    req = Requests(
        arrival_s=np.array([0.0, 0.1, 0.5, 0.55]),
        prompt_tokens=np.array([8000, 800, 800, 800]),
        output_tokens=np.array([2000, 200, 200, 200]),
    )
    service = ServiceTimes.of(req, GPU)  # A holds 2 s, the others 0.2 s each
    for impl in (fast_exclusive, simpy_exclusive):
        ll = impl.run_monolithic(req, mono(2, "least_loaded"), service)
        np.testing.assert_allclose(ll.done_s, [2.0, 0.3, 0.7, 0.9], atol=1e-12)
        np.testing.assert_allclose(ll.pools["gpu"].wait_s, [0, 0, 0, 0.15], atol=1e-12)


def test_least_loaded_ties_go_to_the_lowest_index() -> None:
    """Three idle GPUs: requests at 0, 0.01, 0.02 s of equal size go to GPUs 0, 1, 2; the fourth
    (at 0.03 s, all three loaded equally) queues on GPU 0."""
    req = Requests(
        arrival_s=np.array([0.0, 0.01, 0.02, 0.03]),
        prompt_tokens=np.full(4, 800),
        output_tokens=np.full(4, 200),
    )
    service = ServiceTimes.of(req, GPU)
    for impl in (fast_exclusive, simpy_exclusive):
        ll = impl.run_monolithic(req, mono(3, "least_loaded"), service)
        np.testing.assert_allclose(ll.pools["gpu"].wait_s, [0, 0, 0, 0.17], atol=1e-12)


def test_random_routing_uses_its_own_stream() -> None:
    """Random routing changes no arrivals or sizes, draws the same instances for every
    architecture of a replication (common random numbers), and leaves central runs unchanged."""
    arch = {"kind": "monolithic", "gpus": 4}
    sc = make_scenario(
        architectures={
            "central": arch,
            "random": {**arch, "routing": "random"},
            "random8": {**arch, "gpus": 8, "routing": "random"},
        },
        baseline="central",
    )
    a, b = simulate(sc, "central", 1), simulate(sc, "random", 1)
    np.testing.assert_array_equal(a.requests.arrival_s, b.requests.arrival_s)
    np.testing.assert_array_equal(a.requests.prompt_tokens, b.requests.prompt_tokens)
    u = routing_draws(sc.seed, 1, len(a.requests))
    np.testing.assert_array_equal(u, routing_draws(sc.seed, 1, len(a.requests)))
    assert not np.array_equal(u, routing_draws(sc.seed, 2, len(a.requests)))
    assert not np.array_equal(a.trace.done_s, b.trace.done_s)
    plain = make_scenario(architectures={"central": arch}, baseline="central")
    np.testing.assert_array_equal(simulate(plain, "central", 1).trace.done_s, a.trace.done_s)


@pytest.mark.parametrize("routing", ROUTED)
def test_small_tied_cases_identical_to_simpy(routing: str) -> None:
    """100 small cases on a 0.5 s grid with sizes of 0.5, 1 or 1.5 s of service: arrivals,
    prefill completions and GPU releases coincide all the time, on 1-3 GPUs per pool."""
    gpu = Gpu(prefill_tokens_per_s=10, decode_tokens_per_s=10)
    for seed in range(100):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(1, 40))
        req = Requests(
            arrival_s=np.sort(rng.integers(0, 30, n) * 0.5),
            prompt_tokens=rng.choice([5, 10, 15], n),
            output_tokens=rng.choice([1, 5, 10], n),
        )
        service = ServiceTimes.of(req, gpu)
        u = rng.random((n, 2))
        m = mono(int(rng.integers(1, 4)), routing)
        d = disagg(int(rng.integers(1, 4)), int(rng.integers(1, 4)), routing,
                   str(rng.choice(["decode", "prefill"])))  # fmt: skip
        assert_identical(
            fast_exclusive.run_monolithic(req, m, service, route_u=u),
            simpy_exclusive.run_monolithic(req, m, service, route_u=u),
        )
        assert_identical(
            fast_exclusive.run_disaggregated(req, d, service, route_u=u),
            simpy_exclusive.run_disaggregated(req, d, service, route_u=u),
        )
