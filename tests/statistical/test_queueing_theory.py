"""The exclusive engine against closed-form queueing results.

Each check runs R independent replications and compares the across-replication average with the
closed form. The tolerance is 4 standard errors of that average, taken from the spread between
replications (so autocorrelation inside a run is accounted for), plus a small allowance for the
warm-up bias of a system that starts empty; a correct model fails this about once in 10^4 runs,
and the seeds are fixed, so the test is deterministic.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import simpy
from distsim_testkit import make_scenario
from mmc_truth import erlang_c, sojourn_mean_s, sojourn_quantile_s, sojourn_sf

from distsim.sim import simpy_exclusive
from distsim.sim.replication import simulate
from distsim.sim.timeline import ServiceTimes
from distsim.workload.generate import generate

FAST_DECODE = 1e12  # tokens/s: one output token costs ~1e-12 s, so TTFT = wait + prefill


def mm_workload(rate_rps: float, prompt: dict[str, Any]) -> dict[str, Any]:
    return {
        "arrival": {"process": "poisson", "rate_rps": rate_rps},
        "prompt_tokens": prompt,
        "output_tokens": {"dist": "constant", "value": 1},
    }


EXP_PROMPT = {"dist": "exponential", "mean": 10_000}  # 0.1 s at 1e5 tokens/s
GPU_FAST = {"prefill_tokens_per_s": 100_000, "decode_tokens_per_s": FAST_DECODE}


def replicate(scenario, arch: str, reps: int, stat) -> tuple[float, float]:
    """Mean over replications of stat(replication) and its standard error."""
    values = np.array([stat(simulate(scenario, arch, r)) for r in range(reps)])
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(reps))


def assert_close(value: float, se: float, truth: float, what: str, bias_rel: float = 0.005) -> None:
    tol = 4 * se + bias_rel * truth
    print(f"{what}: {value:.5f} vs {truth:.5f}, tolerance {tol / truth:.2%}")
    assert abs(value - truth) <= tol, (
        f"{what}: simulated {value:.5f} vs theory {truth:.5f} (tol {tol:.5f})"
    )


def test_mmc_truth_reduces_to_the_mm1_closed_forms() -> None:
    """The M/M/c formulas of mmc_truth at c = 1: sojourn time exactly Exp(mu - lambda)."""
    lam, mu = 7.0, 10.0
    assert erlang_c(1, lam / mu) == pytest.approx(lam / mu)
    assert sojourn_mean_s(1, lam, 1 / mu) == pytest.approx(1 / (mu - lam))
    for t in (0.05, 0.3, 1.0):
        assert sojourn_sf(t, 1, lam, 1 / mu) == pytest.approx(math.exp(-(mu - lam) * t))
    assert sojourn_quantile_s(0.9, 2, lam, 1 / mu) > 0  # the root-finding branch


@pytest.mark.parametrize("c", [1, 4])
def test_mmc_mean_and_p90_ttft_match_erlang_c(c: int) -> None:
    mu, rho = 10.0, 0.7
    lam = rho * c * mu
    duration = 80_000.0 / lam if c == 4 else 12_000.0
    scenario = make_scenario(
        duration_s=duration,
        warmup_s=duration * 0.05,
        workload=mm_workload(lam, EXP_PROMPT),
        gpu=GPU_FAST,
        architectures={"m": {"kind": "monolithic", "gpus": c}},
        baseline="m",
    )
    mean_truth = sojourn_mean_s(c, lam, 1 / mu)
    mean, se = replicate(scenario, "m", 12, lambda rep: rep.result.ttft_mean_s)
    assert_close(mean, se, mean_truth, f"M/M/{c} mean TTFT")
    p90, se90 = replicate(scenario, "m", 12, lambda rep: rep.result.ttft_p90_s)
    assert_close(p90, se90, sojourn_quantile_s(0.9, c, lam, 1 / mu), f"M/M/{c} P90 TTFT")


def test_md1_mean_wait_matches_pollaczek_khinchine() -> None:
    lam, service = 7.0, 0.1
    rho = lam * service
    scenario = make_scenario(
        duration_s=12_000.0,
        warmup_s=60.0,
        workload=mm_workload(lam, {"dist": "constant", "value": 10_000}),
        gpu=GPU_FAST,
        architectures={"m": {"kind": "monolithic", "gpus": 1}},
        baseline="m",
    )
    wq_truth = rho * service / (2 * (1 - rho))
    wait, se = replicate(scenario, "m", 12, lambda rep: rep.result.pools["gpu"].queue_wait_mean_s)
    assert_close(wait, se, wq_truth, "M/D/1 mean wait")
    ttft, se_t = replicate(scenario, "m", 12, lambda rep: rep.result.ttft_mean_s)
    assert_close(ttft, se_t, wq_truth + service, "M/D/1 mean TTFT")


def test_disaggregated_tandem_mean_ttft_is_sum_of_two_mmc_stages() -> None:
    # Prefill: exponential 0.1 s on 2 GPUs; decode: exponential 0.1 s on 2 GPUs. By Burke's theorem
    # the decode pool also sees Poisson arrivals, so both stages are M/M/2.
    lam, mu, c = 14.0, 10.0, 2
    token_s = 1e-4
    scenario = make_scenario(
        duration_s=9000.0,
        warmup_s=45.0,
        workload={
            "arrival": {"process": "poisson", "rate_rps": lam},
            "prompt_tokens": EXP_PROMPT,
            "output_tokens": {"dist": "exponential", "mean": 1000},
        },
        gpu={"prefill_tokens_per_s": 100_000, "decode_tokens_per_s": 1 / token_s},
        architectures={"d": {"kind": "disaggregated", "prefill_gpus": c, "decode_gpus": c}},
        baseline="d",
        first_token="decode",  # the seed's definition: TTFT includes the decode-pool wait
    )
    wq = erlang_c(c, lam / mu) / (c * mu - lam)
    truth = wq + 1 / mu + wq + token_s
    mean, se = replicate(scenario, "d", 12, lambda rep: rep.result.ttft_mean_s)
    assert_close(mean, se, truth, "tandem mean TTFT")
    wd, se_d = replicate(
        scenario, "d", 12, lambda rep: rep.result.pools["decode"].queue_wait_mean_s
    )
    assert_close(wd, se_d, wq, "decode-pool mean wait")


def probe(samples: dict[str, list[tuple[int, int]]], dt: float, until: float):
    """An observer that samples (queue length, busy GPUs) of every pool every `dt` seconds."""

    def attach(env: simpy.Environment, pools: dict[str, simpy.Resource]) -> None:
        def run():
            while env.now < until:
                for name, res in pools.items():
                    samples.setdefault(name, []).append((len(res.queue), res.count))
                yield env.timeout(dt)

        env.process(run())

    return attach


@pytest.mark.parametrize("kind", ["monolithic", "disaggregated"])
def test_littles_law_and_utilization_per_pool(kind: str) -> None:
    arch = (
        {"kind": "monolithic", "gpus": 3}
        if kind == "monolithic"
        else {"kind": "disaggregated", "prefill_gpus": 1, "decode_gpus": 3}
    )
    scenario = make_scenario(
        duration_s=1500.0,
        warmup_s=1.0,
        workload={
            "arrival": {"process": "poisson", "rate_rps": 4.0},
            "prompt_tokens": {"dist": "lognormal", "mu": 7.0, "sigma": 0.8, "min": 8},
            "output_tokens": {"dist": "lognormal", "mu": 6.0, "sigma": 0.8, "min": 16},
        },
        architectures={"a": arch},
        baseline="a",
    )
    a = scenario.architectures["a"]
    requests = generate(scenario.workload, scenario.duration_s, scenario.seed, 0)
    service = ServiceTimes.of(requests, scenario.gpu)
    samples: dict[str, list[tuple[int, int]]] = {}
    horizon = scenario.duration_s
    run = (
        simpy_exclusive.run_monolithic
        if kind == "monolithic"
        else simpy_exclusive.run_disaggregated
    )
    trace = run(requests, a, service, observer=probe(samples, 0.05, horizon))
    lam = scenario.workload.arrival.rate_rps
    rep = simulate(scenario, "a", 0)
    for name, pool in trace.pools.items():
        queue = np.array([q for q, _ in samples[name]], dtype=float)
        busy = np.array([b for _, b in samples[name]], dtype=float)
        # Little's law on the queue: time-average queue length = arrival rate x mean wait.
        lq_probe = queue.mean()
        lq_little = lam * pool.wait_s.mean()
        assert lq_probe == pytest.approx(lq_little, rel=0.08, abs=0.01), name
        # Little's law on the servers: busy GPUs / GPUs = offered load (from the spec).
        offered = rep.result.pools[name].offered_load
        assert busy.mean() / pool.gpus == pytest.approx(offered, rel=0.05), name
        assert rep.result.pools[name].utilization == pytest.approx(offered, rel=0.05), name
