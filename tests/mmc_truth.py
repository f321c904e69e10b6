"""Closed-form M/M/c response times, and studies whose TTFT is exactly that response time.

TTFT of a monolithic request is its queue wait plus its prefill (the first token appears when
prefill ends). With exponential prompt sizes of mean 10^6 tokens (rounding changes a size by at
most 5e-7 of the mean) and one output token decoded at 10^12 tokens/s (10^-12 s per request), a
monolithic pool of c GPUs is an M/M/c FCFS queue and TTFT is its sojourn time T = Wq + S:
Wq = 0 with probability 1 - C (Erlang C), otherwise exponential with rate c mu - lambda; S is
exponential with rate mu, independent of Wq.
"""

from __future__ import annotations

import math
from typing import Any

from scipy import optimize

from distsim.spec.study import Scenario

PROMPT_MEAN_TOKENS = 1e6
FAST_DECODE = 1e12


def erlang_c(c: int, offered: float) -> float:
    """P(an arrival waits) in M/M/c with offered traffic lambda/mu < c."""
    below = sum(offered**k / math.factorial(k) for k in range(c))
    top = offered**c / math.factorial(c) * c / (c - offered)
    return top / (below + top)


def sojourn_mean_s(c: int, rate_rps: float, service_s: float) -> float:
    mu = 1.0 / service_s
    return 1.0 / mu + erlang_c(c, rate_rps / mu) / (c * mu - rate_rps)


def sojourn_sf(t: float, c: int, rate_rps: float, service_s: float) -> float:
    """P(T > t)."""
    mu = 1.0 / service_s
    waits = erlang_c(c, rate_rps / mu)
    theta = c * mu - rate_rps
    if math.isclose(theta, mu):
        waited = math.exp(-mu * t) * (1.0 + mu * t)
    else:
        waited = (mu * math.exp(-theta * t) - theta * math.exp(-mu * t)) / (mu - theta)
    return (1.0 - waits) * math.exp(-mu * t) + waits * waited


def sojourn_quantile_s(q: float, c: int, rate_rps: float, service_s: float) -> float:
    if c == 1:  # M/M/1: T is exponential with rate mu - lambda
        return -math.log1p(-q) / (1.0 / service_s - rate_rps)
    return optimize.brentq(
        lambda t: sojourn_sf(t, c, rate_rps, service_s) - (1.0 - q), 0.0, 1e4 * service_s
    )


def mmc_scenario(
    rate_rps: float,
    service_s: float,
    gpus: dict[str, int],
    duration_s: float,
    warmup_s: float,
    seed: int,
) -> Scenario:
    """A scenario with one monolithic architecture per entry of `gpus` (name -> GPU count)."""
    data: dict[str, Any] = {
        "seed": seed,
        "duration_s": duration_s,
        "warmup_s": warmup_s,
        "workload": {
            "arrival": {"process": "poisson", "rate_rps": rate_rps},
            "prompt_tokens": {"dist": "exponential", "mean": PROMPT_MEAN_TOKENS},
            "output_tokens": {"dist": "constant", "value": 1},
        },
        "gpu": {
            "prefill_tokens_per_s": PROMPT_MEAN_TOKENS / service_s,
            "decode_tokens_per_s": FAST_DECODE,
        },
        "architectures": {name: {"kind": "monolithic", "gpus": c} for name, c in gpus.items()},
    }
    return Scenario.model_validate(data)
