"""The fast exclusive engine against the SimPy reference model, request by request.

Truth here is the SimPy process-per-request model (distsim.sim.simpy_exclusive) run on the same
arrays, plus a few cases small enough to work out by hand. Ties matter: with arrivals on a 0.1 s
grid and service times that are multiples of 0.1 s, many requests arrive, finish prefill and free
GPUs at the same instant, and the decode pool's queue order then decides who waits. Output sizes
take two values in those cases, so a wrong order changes the times.
"""

from __future__ import annotations

import numpy as np
import pytest
from distsim_testkit import make_scenario
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distsim.sim import fast_exclusive, simpy_exclusive
from distsim.sim.metrics import offered_load, summarize
from distsim.sim.replication import simulate
from distsim.sim.timeline import ServiceTimes, Timeline
from distsim.spec.study import Disaggregated, Gpu, Monolithic
from distsim.workload.generate import Requests, generate

TOL_S = 1e-9
GPU = Gpu(prefill_tokens_per_s=8000, decode_tokens_per_s=2000)


def mono(gpus: int) -> Monolithic:
    return Monolithic(kind="monolithic", gpus=gpus)


def disagg(prefill_gpus: int, decode_gpus: int, first_token: str) -> Disaggregated:
    return Disaggregated(
        kind="disaggregated",
        prefill_gpus=prefill_gpus,
        decode_gpus=decode_gpus,
        first_token=first_token,
    )


def run_both(
    requests: Requests, arch: Monolithic | Disaggregated, gpu: Gpu = GPU
) -> tuple[Timeline, Timeline]:
    service = ServiceTimes.of(requests, gpu)
    if isinstance(arch, Monolithic):
        return (
            fast_exclusive.run_monolithic(requests, arch, service),
            simpy_exclusive.run_monolithic(requests, arch, service),
        )
    return (
        fast_exclusive.run_disaggregated(requests, arch, service),
        simpy_exclusive.run_disaggregated(requests, arch, service),
    )


def assert_same(fast: Timeline, ref: Timeline) -> None:
    """Same first-token and done time of every request, same waits and busy times per pool."""
    np.testing.assert_allclose(fast.first_token_s, ref.first_token_s, rtol=0, atol=TOL_S)
    np.testing.assert_allclose(fast.done_s, ref.done_s, rtol=0, atol=TOL_S)
    assert fast.pools.keys() == ref.pools.keys()
    for name, pool in ref.pools.items():
        assert fast.pools[name].gpus == pool.gpus
        np.testing.assert_allclose(fast.pools[name].wait_s, pool.wait_s, rtol=0, atol=TOL_S)
        np.testing.assert_array_equal(fast.pools[name].busy_s, pool.busy_s)


ARCHS = [
    mono(4),
    mono(1),
    disagg(2, 2, "decode"),
    disagg(2, 2, "prefill"),
    disagg(1, 3, "decode"),
    disagg(3, 1, "prefill"),
]


def _id(arch: Monolithic | Disaggregated) -> str:
    if isinstance(arch, Monolithic):
        return f"mono{arch.gpus}"
    return f"dis{arch.prefill_gpus}+{arch.decode_gpus}-{arch.first_token}"


# ----------------------------------------------------------------- generated workloads


@pytest.mark.parametrize("arch", ARCHS, ids=_id)
@pytest.mark.parametrize("load", [0.3, 0.8, 0.97, 1.3])
def test_default_workload_at_several_loads(arch: Monolithic | Disaggregated, load: float) -> None:
    """Poisson arrivals and lognormal sizes; `load` is the busiest pool's offered load (1.3 is
    overload: queues grow all run long)."""
    base = make_scenario(duration_s=600.0, warmup_s=0.0)
    busiest = max(offered_load(base.workload, base.gpu, arch).values())
    rate = base.workload.arrival.rate_rps * load / busiest
    scenario = make_scenario(
        duration_s=600.0,
        warmup_s=0.0,
        workload={
            **base.workload.model_dump(),
            "arrival": {"process": "poisson", "rate_rps": rate},
        },
    )
    requests = generate(scenario.workload, scenario.duration_s, scenario.seed, 3)
    assert len(requests) > 300
    fast, ref = run_both(requests, arch, scenario.gpu)
    assert_same(fast, ref)
    if load > 1:  # the run really is overloaded: the last requests wait far longer than service
        assert max(p.wait_s[-10:].min() for p in ref.pools.values()) > 20.0


def tied_requests(seed: int, n: int, span_s: float, constant: bool) -> Requests:
    """Arrivals rounded to 0.1 s (many share an instant); sizes in multiples of 0.1 s of service
    at GPU's rates (800 prompt tokens, 200 output tokens), constant or two-valued."""
    rng = np.random.default_rng(seed)
    arrival = np.sort(np.round(rng.uniform(0.0, span_s, n), 1))
    if constant:
        prompt = np.full(n, 800, np.int64)
        output = np.full(n, 200, np.int64)
    else:
        prompt = rng.choice(np.array([800, 1600]), n)
        output = rng.choice(np.array([200, 400, 600]), n)
    return Requests(arrival_s=arrival, prompt_tokens=prompt, output_tokens=output)


@pytest.mark.parametrize("arch", ARCHS, ids=_id)
@pytest.mark.parametrize("constant", [True, False], ids=["constant", "mixed"])
@pytest.mark.parametrize("span_s", [20.0, 60.0, 200.0])
def test_heavy_ties(arch: Monolithic | Disaggregated, constant: bool, span_s: float) -> None:
    """500 requests on a 0.1 s grid: from heavy overload (20 s) to moderate load (200 s)."""
    requests = tied_requests(int(span_s), 500, span_s, constant)
    assert len(requests) - np.unique(requests.arrival_s).size >= 50  # many share an instant
    fast, ref = run_both(requests, arch)
    assert_same(fast, ref)
    if isinstance(arch, Disaggregated) and arch.prefill_gpus > 1:  # simultaneous completions
        service = ServiceTimes.of(requests, GPU)
        decode = ref.pools["decode"]
        ready_s = np.round(ref.done_s - service.decode_s - decode.wait_s, 6)
        assert len(requests) - np.unique(ready_s).size >= 50


# ----------------------------------------------------------------- hand-computed cases


def test_simultaneous_prefill_completions_join_decode_in_arrival_order() -> None:
    """Two prefill GPUs. A arrives at 0 with 1 s of prefill, B at 0.5 s with 0.5 s: both finish
    prefill at exactly 1 s. SimPy queues A first for the single decode GPU (its prefill was
    granted first), so A decodes 1-3 s (4,000 tokens at 2,000/s) and B 3-3.5 s."""
    requests = Requests(
        arrival_s=np.array([0.0, 0.5]),
        prompt_tokens=np.array([8000, 4000]),
        output_tokens=np.array([4000, 1000]),
    )
    for first_token, first_s in (("decode", [1.0005, 3.0005]), ("prefill", [1.0, 1.0])):
        fast, ref = run_both(requests, disagg(2, 1, first_token))
        np.testing.assert_array_equal(fast.first_token_s, first_s)
        np.testing.assert_array_equal(fast.done_s, [3.0, 3.5])
        np.testing.assert_array_equal(fast.pools["decode"].wait_s, [0.0, 2.0])
        assert_same(fast, ref)


def test_monolithic_by_hand() -> None:
    """Two GPUs, three requests at 0, 0, 0.25 s with 0.5 s prefill and 1 s decode: the third
    waits for the first GPU to free at 1.5 s."""
    requests = Requests(
        arrival_s=np.array([0.0, 0.0, 0.25]),
        prompt_tokens=np.array([4000, 4000, 4000]),
        output_tokens=np.array([2000, 2000, 2000]),
    )
    fast, ref = run_both(requests, mono(2))
    np.testing.assert_array_equal(fast.first_token_s, [0.5, 0.5, 2.0])
    np.testing.assert_array_equal(fast.done_s, [1.5, 1.5, 3.0])
    np.testing.assert_array_equal(fast.pools["gpu"].wait_s, [0.0, 0.0, 1.25])
    assert_same(fast, ref)


@pytest.mark.parametrize("arch", [mono(3), disagg(2, 5, "decode"), disagg(5, 2, "prefill")])
def test_edge_sizes(arch: Monolithic | Disaggregated) -> None:
    """No requests; one request; more GPUs than requests."""
    for n in (0, 1, 2):
        requests = Requests(
            arrival_s=np.linspace(0.0, 1.0, n),
            prompt_tokens=np.full(n, 100, np.int64),
            output_tokens=np.full(n, 50, np.int64),
        )
        fast, ref = run_both(requests, arch)
        assert fast.done_s.shape == (n,)
        assert_same(fast, ref)


# ----------------------------------------------------------------- generated small cases

STEP_S = st.sampled_from([0.1, 0.25, 0.05])


@st.composite
def small_cases(draw: st.DrawFn) -> tuple[Requests, Gpu]:
    """Up to 40 requests on a coarse time grid with few distinct sizes: ties everywhere."""
    n = draw(st.integers(0, 40))
    step = draw(STEP_S)
    ticks = sorted(draw(st.lists(st.integers(0, 30), min_size=n, max_size=n)))
    sizes = st.lists(st.sampled_from([1, 2, 3, 5, 8]), min_size=n, max_size=n)
    prompt_units = np.array(draw(sizes), np.int64)
    output_units = np.array(draw(sizes), np.int64)
    gpu = draw(st.sampled_from([GPU, Gpu(prefill_tokens_per_s=1000, decode_tokens_per_s=700)]))
    requests = Requests(
        arrival_s=np.array(ticks, np.float64) * step,
        prompt_tokens=prompt_units * 400,
        output_tokens=output_units * 100,
    )
    return requests, gpu


@st.composite
def architectures(draw: st.DrawFn) -> Monolithic | Disaggregated:
    if draw(st.booleans()):
        return mono(draw(st.integers(1, 5)))
    return disagg(
        draw(st.integers(1, 4)),
        draw(st.integers(1, 4)),
        draw(st.sampled_from(["decode", "prefill"])),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=small_cases(), arch=architectures())
def test_generated_small_cases(
    case: tuple[Requests, Gpu], arch: Monolithic | Disaggregated
) -> None:
    requests, gpu = case
    fast, ref = run_both(requests, arch, gpu)
    assert_same(fast, ref)


# ----------------------------------------------------------------- the library entry point


@pytest.mark.parametrize("architecture", ["monolithic", "disaggregated"])
def test_simulate_defaults_to_fast_and_keeps_the_reference(
    architecture: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`simulate` uses the fast implementation unless asked for SimPy; the metrics agree."""
    scenario = make_scenario(duration_s=300.0)
    ref = simulate(scenario, architecture, 1, implementation="simpy")

    def not_the_default(*args: object, **kwargs: object) -> None:
        raise AssertionError("the SimPy reference ran by default")

    monkeypatch.setattr(simpy_exclusive, "run_monolithic", not_the_default)
    monkeypatch.setattr(simpy_exclusive, "run_disaggregated", not_the_default)
    fast = simulate(scenario, architecture, 1)
    assert_same(fast.trace, ref.trace)
    flat_fast, flat_ref = fast.result.flat(), ref.result.flat()
    assert flat_fast.keys() == flat_ref.keys()
    np.testing.assert_allclose(list(flat_fast.values()), list(flat_ref.values()), rtol=1e-12)


# ----------------------------------------------------------------- summarize, sped up


@settings(max_examples=100, deadline=None)
@given(case=small_cases(), arch=architectures(), warmup_ticks=st.integers(0, 40))
def test_summarize_quantiles_are_numpys_default(
    case: tuple[Requests, Gpu], arch: Monolithic | Disaggregated, warmup_ticks: int
) -> None:
    """summarize computes its quantiles together and in place: each must still equal
    np.quantile(x, q) of the measured requests on its own, and means the arrival-order mean."""
    requests, gpu = case
    warmup_s = warmup_ticks * 0.1
    trace = fast_exclusive_run(requests, arch, gpu)
    load = {name: 0.5 for name in trace.pools}
    result = summarize(requests, trace, warmup_s, load)
    measured = requests.arrival_s >= warmup_s
    ttft = (trace.first_token_s - requests.arrival_s)[measured]
    e2e = (trace.done_s - requests.arrival_s)[measured]
    assert result.n_requests == int(measured.sum())
    if not ttft.size:
        assert np.isnan(result.ttft_p50_s) and np.isnan(result.e2e_p99_s)
        return
    assert result.ttft_mean_s == ttft.mean()
    assert result.e2e_mean_s == e2e.mean()
    assert result.ttft_max_s == ttft.max()
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        assert getattr(result, f"ttft_{name}_s") == np.quantile(ttft, q)
    assert result.e2e_p99_s == np.quantile(e2e, 0.99)
    steps = requests.output_tokens[measured] - 1
    tpot = ((trace.done_s - trace.first_token_s)[measured])[steps > 0] / steps[steps > 0]
    if tpot.size:
        assert result.tpot_mean_s == tpot.mean()
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
            assert getattr(result, f"tpot_{name}_s") == np.quantile(tpot, q)


def fast_exclusive_run(requests: Requests, arch: Monolithic | Disaggregated, gpu: Gpu) -> Timeline:
    service = ServiceTimes.of(requests, gpu)
    if isinstance(arch, Monolithic):
        return fast_exclusive.run_monolithic(requests, arch, service)
    return fast_exclusive.run_disaggregated(requests, arch, service)


def test_warm_up_compiles_every_kernel() -> None:
    fast_exclusive.load_kernels()
    for kernel in (
        fast_exclusive._monolithic_kernel,
        fast_exclusive._prefill_kernel,
        fast_exclusive._decode_kernel,
    ):
        assert kernel.signatures  # compiled (or loaded from cache) for float64 arrays
