"""Workload generation: reproducible, common across architectures, independent across replications,
and with the moments the spec asks for."""

from __future__ import annotations

import math

import numpy as np
import pytest
from distsim_testkit import make_scenario
from scipy import stats

from distsim.sim.replication import simulate
from distsim.spec.study import Constant, Exponential, Lognormal, Uniform
from distsim.workload.distributions import rounded_mean, sample
from distsim.workload.generate import generate


def test_same_seed_gives_identical_per_request_results() -> None:
    scenario = make_scenario()
    for arch in ("monolithic", "disaggregated"):
        a, b = simulate(scenario, arch, 3), simulate(scenario, arch, 3)
        np.testing.assert_array_equal(a.requests.arrival_s, b.requests.arrival_s)
        np.testing.assert_array_equal(a.trace.first_token_s, b.trace.first_token_s)
        np.testing.assert_array_equal(a.trace.done_s, b.trace.done_s)
        assert a.result == b.result


def test_every_architecture_serves_the_same_requests() -> None:
    scenario = make_scenario()
    mono, disagg = simulate(scenario, "monolithic", 2), simulate(scenario, "disaggregated", 2)
    for field in ("arrival_s", "prompt_tokens", "output_tokens"):
        np.testing.assert_array_equal(
            getattr(mono.requests, field), getattr(disagg.requests, field)
        )


def test_size_draws_do_not_depend_on_the_arrival_rate() -> None:
    # One stream per purpose: a faster arrival process only adds requests at the end of the
    # size streams; the first requests keep their sizes.
    slow = make_scenario().workload
    fast = make_scenario(
        workload={
            **make_scenario().workload.model_dump(),
            "arrival": {"process": "poisson", "rate_rps": 5.0},
        }
    ).workload
    a, b = generate(slow, 60.0, 7, 0), generate(fast, 60.0, 7, 0)
    n = min(len(a), len(b))
    np.testing.assert_array_equal(a.prompt_tokens[:n], b.prompt_tokens[:n])
    np.testing.assert_array_equal(a.output_tokens[:n], b.output_tokens[:n])


def test_replications_are_independent_streams() -> None:
    workload = make_scenario().workload
    reps = [generate(workload, 2000.0, 7, r) for r in range(4)]
    for i in range(len(reps)):
        for j in range(i + 1, len(reps)):
            n = min(len(reps[i]), len(reps[j]))
            assert not np.array_equal(reps[i].prompt_tokens[:n], reps[j].prompt_tokens[:n])
            # log sizes are iid normal: the correlation between two streams is ~N(0, 1/n).
            r, _ = stats.pearsonr(
                np.log(reps[i].prompt_tokens[:n]), np.log(reps[j].prompt_tokens[:n])
            )
            assert abs(r) < 4 / math.sqrt(n)


def test_poisson_arrivals_have_the_requested_rate_and_exponential_gaps() -> None:
    workload = make_scenario().workload  # 2 req/s
    req = generate(workload, 20_000.0, 11, 0)
    n = len(req)
    assert abs(n - 40_000) < 4 * math.sqrt(40_000)
    assert req.arrival_s.min() >= 0 and req.arrival_s.max() < 20_000.0
    assert np.all(np.diff(req.arrival_s) >= 0)
    gaps = np.diff(req.arrival_s)
    assert stats.kstest(gaps, stats.expon(scale=0.5).cdf).pvalue > 1e-3


@pytest.mark.parametrize(
    ("dist", "truth"),
    [
        # Hand-computed: round(U[0,2)) is 0, 1, 2 with prob 1/4, 1/2, 1/4; 0 is clamped to min=1.
        (Uniform(dist="uniform", low=0, high=2), 1.25),
        # numpy rounds half to even: 2.5 -> 2; then clamped to [3, 10] -> 3.
        (Constant(dist="constant", value=2.5, min=3, max=10), 3.0),
        (Constant(dist="constant", value=2.5), 2.0),
        # Exponential, max=1: everything rounds into {0, 1} and is clamped to 1.
        (Exponential(dist="exponential", mean=5.0, max=1), 1.0),
    ],
)
def test_rounded_mean_matches_hand_computation(dist, truth: float) -> None:
    assert rounded_mean(dist) == pytest.approx(truth, rel=1e-9)


@pytest.mark.parametrize(
    "dist",
    [
        Lognormal(dist="lognormal", mu=6.0, sigma=0.9, min=8),
        Lognormal(dist="lognormal", mu=6.0, sigma=1.1, min=16, max=4096),
        Exponential(dist="exponential", mean=3.0),
        Uniform(dist="uniform", low=10, high=20.5, min=12),
        Constant(dist="constant", value=300),
    ],
)
def test_sample_mean_agrees_with_exact_rounded_mean(dist) -> None:
    x = sample(dist, np.random.default_rng(5), 400_000)
    assert x.dtype == np.int64
    assert x.min() >= dist.min and (dist.max is None or x.max() <= dist.max)
    se = x.std() / math.sqrt(x.size)
    assert abs(x.mean() - rounded_mean(dist)) <= 4 * se + 1e-12
    # Without clamping, the rounded lognormal mean is close to exp(mu + sigma^2 / 2).
    if isinstance(dist, Lognormal) and dist.max is None:
        assert rounded_mean(dist) == pytest.approx(math.exp(dist.mu + dist.sigma**2 / 2), rel=0.01)
