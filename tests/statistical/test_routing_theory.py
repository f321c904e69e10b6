"""Routing across instances and a GPU type per pool, against closed-form queueing results.

Setting (issue 16): exclusive engine, exponential prompt sizes, instant decode, lambda = 7/s on
4 GPUs each serving 2.5 prompts/s (load 0.7). TTFT is then the sojourn time of the prompt:
- central: one M/M/4 queue, Erlang C: 0.5429 s;
- random: four independent M/M/1 queues at lambda/4 (Poisson thinning): 1/(mu - lambda/4) =
  1.3333 s;
- round_robin: every 4th arrival of a Poisson stream goes to a GPU, so each GPU is an E4/M/1
  queue; GI/M/1 gives sigma = A*(mu(1 - sigma)) with A*(s) = (lambda/(lambda + s))^4 and mean
  sojourn 1/(mu(1 - sigma)) = 0.8947 s;
- least_loaded (fewest outstanding tokens): no closed form; it must lie between central (one
  queue never leaves a GPU idle while a request waits) and round_robin (blind to the load).

Each check averages R = 20 independent replications and allows 4 standard errors of that average
(estimated from the spread between replications, so a t with 19 degrees of freedom) plus 1% for
the warm-up bias of a system that starts empty: a correct model fails one check with probability
at most 2 P(t_19 > 4) = 7.7e-4, the seven checks of this module together at most 0.6%. Seeds
are fixed, so the test is deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from mmc_truth import FAST_DECODE, PROMPT_MEAN_TOKENS, erlang_c, sojourn_mean_s
from scipy import optimize

from distsim.sim.replication import simulate
from distsim.spec.study import Scenario

LAM, MU, C = 7.0, 2.5, 4
REPS = 20
DURATION_S = 4000.0
WARMUP_S = 200.0


def scenario(architectures: dict, gpu: dict | None = None, output: dict | None = None) -> Scenario:
    return Scenario.model_validate(
        {
            "seed": 16,
            "duration_s": DURATION_S,
            "warmup_s": WARMUP_S,
            "workload": {
                "arrival": {"process": "poisson", "rate_rps": LAM},
                "prompt_tokens": {"dist": "exponential", "mean": PROMPT_MEAN_TOKENS},
                "output_tokens": output or {"dist": "constant", "value": 1},
            },
            "gpu": gpu
            or {
                "prefill_tokens_per_s": PROMPT_MEAN_TOKENS * MU,
                "decode_tokens_per_s": FAST_DECODE,
            },
            "architectures": architectures,
        }
    )


def e4m1_mean_sojourn_s(lam: float, mu: float, k: int) -> float:
    """GI/M/1 with Erlang-k interarrivals of mean k/lam (every k-th Poisson arrival)."""
    sigma = optimize.brentq(lambda s: (lam / (lam + mu * (1 - s))) ** k - s, 1e-12, 1 - 1e-12)
    return 1.0 / (mu * (1.0 - sigma))


def test_closed_forms_are_the_issue_figures() -> None:
    assert sojourn_mean_s(C, LAM, 1 / MU) == pytest.approx(0.5429, abs=1e-4)
    random_s = 1 / (MU - LAM / C)
    assert random_s == pytest.approx(1.3333, abs=1e-4)
    assert e4m1_mean_sojourn_s(LAM, MU, C) == pytest.approx(0.8947, abs=1e-4)


def mean_over_reps(sc: Scenario, arch: str, stat=lambda r: r.result.ttft_mean_s):
    values = np.array([stat(simulate(sc, arch, r)) for r in range(REPS)])
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(REPS)), values


def assert_close(value: float, se: float, truth: float, what: str) -> None:
    tol = 4 * se + 0.01 * truth
    print(f"{what}: {value:.4f} vs {truth:.4f} (tolerance {tol:.4f})")
    assert abs(value - truth) <= tol, f"{what}: simulated {value:.4f} vs theory {truth:.4f}"


@pytest.fixture(scope="module")
def routed() -> dict[str, tuple[float, float, np.ndarray]]:
    archs = {
        r: {"kind": "monolithic", "gpus": C, "routing": r}
        for r in ("central", "random", "round_robin", "least_loaded")
    }
    sc = scenario(archs)
    return {name: mean_over_reps(sc, name) for name in archs}


def test_central_is_erlang_c(routed) -> None:
    assert_close(*routed["central"][:2], sojourn_mean_s(C, LAM, 1 / MU), "central (M/M/4)")


def test_random_is_four_mm1(routed) -> None:
    assert_close(*routed["random"][:2], 1 / (MU - LAM / C), "random (4 x M/M/1)")


def test_round_robin_is_e4_m_1(routed) -> None:
    assert_close(*routed["round_robin"][:2], e4m1_mean_sojourn_s(LAM, MU, C), "round robin")


def test_least_loaded_lies_between_central_and_round_robin(routed) -> None:
    """Paired over replications (same arrivals and sizes): central < least_loaded < round robin
    in every replication's mean would be too strong a claim; the averages' order, by more than
    4 standard errors of the paired differences, is what the theory supports."""
    ll = routed["least_loaded"][2]
    for other, sign in (("central", 1), ("round_robin", -1)):
        diff = sign * (ll - routed[other][2])
        se = diff.std(ddof=1) / math.sqrt(REPS)
        print(f"least_loaded vs {other}: {sign * diff.mean():+.4f} s (se {se:.4f})")
        assert diff.mean() > 4 * se, other


def test_disaggregated_tandem_with_a_gpu_per_pool_is_two_erlang_c_pools() -> None:
    """Prefill on 4 GPUs of one type at 2.5 prompts/s each (M/M/4, load 0.7), decode on 2 GPUs
    of another at 5 requests/s each (exponential output sizes; by Burke's theorem the decode
    pool also sees Poisson arrivals at lambda: M/M/2, load 0.7). The study's own `gpu` is used by
    no pool. With first_token: decode, TTFT = W(prefill) + Wq(decode) + one decode token; E2E =
    W(prefill) + W(decode)."""
    out_mean = 1e6
    dec_rate = out_mean * 5.0  # tokens/s: 5 requests/s per decode GPU
    sc = scenario(
        {
            "d": {
                "kind": "disaggregated",
                "prefill_gpus": C,
                "decode_gpus": 2,
                "prefill_gpu": {
                    "prefill_tokens_per_s": PROMPT_MEAN_TOKENS * MU,
                    "decode_tokens_per_s": 1.0,
                },
                "decode_gpu": {"prefill_tokens_per_s": 1.0, "decode_tokens_per_s": dec_rate},
                "first_token": "decode",  # the seed's definition (the docstring's TTFT)
            }
        },  # fmt: skip
        gpu={"prefill_tokens_per_s": 1.0, "decode_tokens_per_s": 1.0},
        output={"dist": "exponential", "mean": out_mean},
    )
    w_pre = sojourn_mean_s(C, LAM, 1 / MU)
    wq_dec = erlang_c(2, LAM / 5.0) / (2 * 5.0 - LAM)
    mean, se, _ = mean_over_reps(sc, "d")
    assert_close(mean, se, w_pre + wq_dec + 1 / dec_rate, "tandem TTFT")
    mean, se, _ = mean_over_reps(sc, "d", lambda r: r.result.e2e_mean_s)
    assert_close(mean, se, w_pre + sojourn_mean_s(2, LAM, 0.2), "tandem E2E")
    off = simulate(sc, "d", 0).result.pools
    assert off["prefill"].offered_load == pytest.approx(LAM / (C * MU), rel=1e-3)
    assert off["decode"].offered_load == pytest.approx(LAM / (2 * 5.0), rel=1e-3)
