"""The pure entry point of one replication: (scenario, architecture, replication) -> result.

No globals, no I/O: a Ray task, a test and a notebook all call `simulate` the same way and get the
same numbers for the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from distsim.errors import SpecError
from distsim.sim import Implementation, batched, fast_exclusive, simpy_exclusive
from distsim.sim.metrics import ReplicationResult, measured_mask, offered_load, summarize
from distsim.sim.serving import ServingConfig, pool_rates
from distsim.sim.serving import configure as configure_serving
from distsim.sim.timeline import ServiceTimes, Timeline
from distsim.spec.hardware import ExclusiveRates
from distsim.spec.serving import Slo
from distsim.spec.study import Architecture, Disaggregated, Gpu, Monolithic, Scenario
from distsim.workload.generate import Requests, generate
from distsim.workload.streams import ROUTING, stream


@dataclass(frozen=True)
class Replication:
    """One replication of one architecture: its metrics and, for callers who want them, the
    per-request arrays it was computed from. The metrics are summarised on first use of `result`
    (a caller that reads only `ttft_s`, e.g. a coverage study, skips that work)."""

    architecture: str
    replication: int
    seed: int
    requests: Requests
    trace: Timeline
    measured: np.ndarray  # bool mask over requests
    warmup_s: float
    load: dict[str, float]  # offered load per pool
    slo: Slo | None

    @cached_property
    def result(self) -> ReplicationResult:
        return summarize(self.requests, self.trace, self.warmup_s, self.load, self.slo)

    @property
    def ttft_s(self) -> np.ndarray:
        """TTFT of every measured request, in arrival order."""
        return (self.trace.first_token_s - self.requests.arrival_s)[self.measured]


_IMPLEMENTATIONS = {"fast": fast_exclusive, "simpy": simpy_exclusive}


def run_engine(
    requests: Requests,
    arch: Architecture,
    gpu: Gpu | ExclusiveRates | dict[str, Gpu | ExclusiveRates],
    implementation: Implementation = "fast",
    plan: ServingConfig | None = None,
    route_u: np.ndarray | None = None,
) -> Timeline:
    """Simulate one architecture on given requests: the exclusive engine, or the batched engine
    when a serving `plan` (`distsim.sim.serving.configure`, for `engine: batched`) is given.

    `gpu`: token rates of one GPU, or pool name -> rates when pools differ. `route_u`: the
    replication's routing draws (`routing_draws`), needed by `routing: random`."""
    if plan is not None:
        return batched.run(requests, plan, implementation=implementation, route_u=route_u)
    if isinstance(gpu, dict):
        service = ServiceTimes.of(
            requests, gpu.get("prefill", gpu.get("gpu")), gpu.get("decode", gpu.get("gpu"))
        )
    else:
        service = ServiceTimes.of(requests, gpu)
    impl = _IMPLEMENTATIONS[implementation]
    if isinstance(arch, Monolithic):
        return impl.run_monolithic(requests, arch, service, route_u=route_u)
    if isinstance(arch, Disaggregated):
        return impl.run_disaggregated(requests, arch, service, route_u=route_u)
    raise TypeError(f"unknown architecture {arch!r}")  # pragma: no cover


def routing_draws(seed: int, replication: int, n: int) -> np.ndarray:
    """Uniforms on [0, 1), one row per request (column 0: the first pool, 1: the decode pool),
    from the replication's own `routing` stream: every architecture of replication r routes
    with the same draws, and the arrivals and sizes streams are untouched."""
    return stream(seed, replication, ROUTING).random((n, 2))


def architecture_of(scenario: Scenario, name: str) -> Architecture:
    try:
        return scenario.architectures[name]
    except KeyError:
        known = ", ".join(scenario.architectures)
        raise SpecError(f"--arch: '{name}' is not an architecture of the spec ({known})") from None


def simulate_requests(
    scenario: Scenario,
    architecture: str,
    replication: int,
    requests: Requests,
    implementation: Implementation = "fast",
) -> Replication:
    """Simulate given (already generated) requests; lets callers share one workload."""
    arch = architecture_of(scenario, architecture)
    rates = pool_rates(scenario, arch)  # each pool's GPU: given rates, or model + hardware
    plan = configure_serving(scenario, arch) if scenario.engine == "batched" else None
    route_u = None
    if arch.routing == "random":
        route_u = routing_draws(scenario.seed, replication, len(requests))
    trace = run_engine(requests, arch, rates, implementation, plan, route_u)
    return Replication(
        architecture=architecture,
        replication=replication,
        seed=scenario.seed,
        requests=requests,
        trace=trace,
        measured=measured_mask(requests, scenario.warmup_s),
        warmup_s=scenario.warmup_s,
        load=offered_load(scenario.workload, rates, arch, scenario.duration_s),
        slo=scenario.slo,
    )


def simulate(
    scenario: Scenario,
    architecture: str,
    replication: int = 0,
    implementation: Implementation = "fast",
) -> Replication:
    """Replication `replication` of one architecture of a scenario."""
    requests = generate(scenario.workload, scenario.duration_s, scenario.seed, replication)
    return simulate_requests(scenario, architecture, replication, requests, implementation)
