"""Workload generation: the requests of one replication, as arrays, before anything is simulated.

Pure functions of (workload spec, duration, seed, replication). Each quantity comes from its own
named stream, so changing the arrival rate leaves the size draws of every request untouched and
every architecture of a replication serves exactly the same requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distsim import rng as rngs
from distsim.distributions import sample
from distsim.spec import Arrival, GammaArrival, PoissonArrival, Workload


@dataclass(frozen=True)
class Requests:
    """One replication's requests in arrival order (ties keep their draw order)."""

    arrival_s: np.ndarray  # float64, non-decreasing, in [0, duration_s)
    prompt_tokens: np.ndarray  # int64 >= 1
    output_tokens: np.ndarray  # int64 >= 1

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])


def _gaps(arrival: Arrival, rng: np.random.Generator, n: int) -> np.ndarray:
    if isinstance(arrival, PoissonArrival):
        return rng.exponential(1.0 / arrival.rate_rps, n)
    if isinstance(arrival, GammaArrival):
        shape = 1.0 / arrival.cv**2
        return rng.gamma(shape, 1.0 / (arrival.rate_rps * shape), n)
    raise TypeError(f"unknown arrival process {arrival!r}")  # pragma: no cover


def arrival_times(arrival: Arrival, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """Arrival instants of a renewal process started at 0, all those before `duration_s`.

    Gaps are drawn in vectorised chunks; the first arrival is one gap after 0.
    """
    expected = arrival.rate_rps * duration_s
    chunk = int(expected + 6.0 * np.sqrt(expected) * max(1.0, getattr(arrival, "cv", 1.0)) + 16)
    times: list[np.ndarray] = []
    last = 0.0
    while True:
        t = last + np.cumsum(_gaps(arrival, rng, chunk))
        if t[-1] >= duration_s:
            times.append(t[t < duration_s])
            break
        times.append(t)
        last = float(t[-1])
    return np.concatenate(times)


def generate(workload: Workload, duration_s: float, seed: int, replication: int) -> Requests:
    """The requests of replication `replication` of a study with root seed `seed`."""
    arrivals = arrival_times(
        workload.arrival, duration_s, rngs.stream(seed, replication, rngs.ARRIVALS)
    )
    n = arrivals.shape[0]
    prompt = sample(workload.prompt_tokens, rngs.stream(seed, replication, rngs.PROMPT_TOKENS), n)
    output = sample(workload.output_tokens, rngs.stream(seed, replication, rngs.OUTPUT_TOKENS), n)
    return Requests(arrival_s=arrivals, prompt_tokens=prompt, output_tokens=output)


def arrival_rate_rps(workload: Workload) -> float:
    """The long-run arrival rate the spec asks for."""
    return float(workload.arrival.rate_rps)
