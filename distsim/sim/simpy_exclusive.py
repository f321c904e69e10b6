"""The seed's model in SimPy, one process per request: the reference implementation.

Monolithic: `gpus` GPUs behind one FCFS queue; a request holds one GPU for its prefill and then
its decode. Disaggregated: a request queues for a prefill GPU, prefills, frees it, queues for a
decode GPU and decodes. Requests arriving at the same instant queue in their draw order. With
`routing` other than `central`, each pool is one single-GPU resource per instance and a `Router`
picks the instance when the request joins the pool.

This is deliberately the straightforward formulation; faster engines must reproduce it exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import simpy

from distsim.sim.timeline import PoolTimeline, ServiceTimes, Timeline
from distsim.spec.study import Disaggregated, Monolithic
from distsim.workload.generate import Requests

# Called once the model is built and before it runs: lets a test attach its own probe processes.
Observer = Callable[[simpy.Environment, dict[str, simpy.Resource]], None]


def _source(
    env: simpy.Environment, arrival_s: np.ndarray, start: Callable[[int], Any]
) -> Generator[simpy.Event, None, None]:
    for i, t in enumerate(arrival_s):
        if t > env.now:
            yield env.timeout(t - env.now)
        env.process(start(i))


class Router:
    """Routed pool: one single-GPU resource per instance, each with its own FCFS queue, and the
    choice of instance made when a request joins the pool.

    round_robin: the k-th request to join goes to instance k mod gpus; random: instance
    floor(u x gpus) for the request's own uniform u; least_loaded: the instance with the fewest
    outstanding tokens — those of requests routed to it that have not finished by now (a request
    in service finishes at its planned end, start + hold) — ties to the lowest index.
    """

    def __init__(
        self, env: simpy.Environment, gpus: int, routing: str, tokens: np.ndarray, u: np.ndarray
    ) -> None:
        self.env = env
        self.instances = [simpy.Resource(env, capacity=1) for _ in range(gpus)]
        self.routing = routing
        self.tokens = tokens
        self.u = u
        self.joined = 0
        self.routed: list[list[int]] = [[] for _ in range(gpus)]
        self.planned_end: dict[int, float] = {}  # request -> end, once it holds its GPU

    def choose(self, i: int) -> simpy.Resource:
        gpus = len(self.instances)
        if self.routing == "round_robin":
            g = self.joined % gpus
        elif self.routing == "random":
            g = min(int(self.u[i] * gpus), gpus - 1)
        else:
            now = self.env.now
            loads = []
            for q in range(gpus):
                self.routed[q] = [
                    j for j in self.routed[q] if not self.planned_end.get(j, np.inf) <= now
                ]
                loads.append(sum(int(self.tokens[j]) for j in self.routed[q]))
            g = loads.index(min(loads))
            self.routed[g].append(i)
        self.joined += 1
        return self.instances[g]


def _column(route_u: np.ndarray | None, n: int, column: int, routing: str) -> np.ndarray:
    if routing != "random":
        return np.zeros(n)
    if route_u is None:
        raise ValueError("routing: random needs the replication's routing draws (route_u)")
    return np.asarray(route_u[:, column], dtype=float)


def run_monolithic(
    requests: Requests,
    arch: Monolithic,
    service: ServiceTimes,
    observer: Observer | None = None,
    route_u: np.ndarray | None = None,
) -> Timeline:
    """Simulate the monolithic pool to completion of every request (`route_u`: per request
    uniforms, column 0, for `routing: random`)."""
    n = len(requests)
    env = simpy.Environment()
    central = arch.routing == "central"
    pool = simpy.Resource(env, capacity=arch.gpus) if central else None
    router = None
    if not central:
        tokens = requests.prompt_tokens + requests.output_tokens
        router = Router(env, arch.gpus, arch.routing, tokens, _column(route_u, n, 0, arch.routing))
    arrival = requests.arrival_s
    wait = np.zeros(n)
    first = np.zeros(n)
    done = np.zeros(n)

    def request(i: int) -> Generator[simpy.Event, None, None]:
        resource = pool if router is None else router.choose(i)
        with resource.request() as grant:
            yield grant
            if router is not None:
                router.planned_end[i] = (env.now + service.prefill_s[i]) + service.decode_s[i]
            wait[i] = env.now - arrival[i]
            yield env.timeout(service.prefill_s[i])
            first[i] = env.now
            yield env.timeout(service.decode_s[i])
            done[i] = env.now

    env.process(_source(env, arrival, request))
    if observer is not None and pool is not None:
        observer(env, {"gpu": pool})
    env.run()
    busy = service.prefill_s + service.decode_s
    return Timeline(first, done, {"gpu": PoolTimeline(arch.gpus, wait, busy)})


def run_disaggregated(
    requests: Requests,
    arch: Disaggregated,
    service: ServiceTimes,
    observer: Observer | None = None,
    route_u: np.ndarray | None = None,
) -> Timeline:
    """Simulate the prefill and decode pools to completion of every request (`route_u`: per
    request uniforms, column 0 prefill and 1 decode, for `routing: random`)."""
    n = len(requests)
    env = simpy.Environment()
    central = arch.routing == "central"
    prefill = simpy.Resource(env, capacity=arch.prefill_gpus) if central else None
    decode = simpy.Resource(env, capacity=arch.decode_gpus) if central else None
    r_pre = r_dec = None
    if not central:
        r_pre = Router(
            env, arch.prefill_gpus, arch.routing, requests.prompt_tokens,
            _column(route_u, n, 0, arch.routing),
        )  # fmt: skip
        r_dec = Router(
            env, arch.decode_gpus, arch.routing, requests.output_tokens,
            _column(route_u, n, 1, arch.routing),
        )  # fmt: skip
    arrival = requests.arrival_s
    wait_p = np.zeros(n)
    wait_d = np.zeros(n)
    first = np.zeros(n)
    done = np.zeros(n)
    start_p = np.zeros(n)
    token_at_prefill = arch.first_token == "prefill"
    ready_now: list[int] = []  # routed: prefills finished at this instant, not yet dispatched
    dispatched: dict[int, simpy.Event] = {}

    def dispatch() -> Generator[simpy.Event, None, None]:
        """Routed decode pool: once every prefill finishing at this instant has reported (their
        timeouts were all created before this zero delay), route them to decode instances in
        the documented order: prefill start, then request index."""
        yield env.timeout(0)
        batch = sorted(ready_now, key=lambda j: (start_p[j], j))
        ready_now.clear()
        for j in batch:
            dispatched.pop(j).succeed(r_dec.choose(j))

    def request(i: int) -> Generator[simpy.Event, None, None]:
        resource = prefill if r_pre is None else r_pre.choose(i)
        with resource.request() as grant:
            yield grant
            if r_pre is not None:
                r_pre.planned_end[i] = env.now + service.prefill_s[i]
            start_p[i] = env.now
            wait_p[i] = env.now - arrival[i]
            yield env.timeout(service.prefill_s[i])
        ready = env.now
        if token_at_prefill:
            first[i] = ready
        if r_dec is None:
            resource = decode
        else:
            dispatched[i] = env.event()
            if not ready_now:
                env.process(dispatch())
            ready_now.append(i)
            resource = yield dispatched[i]
        with resource.request() as grant:
            yield grant
            if r_dec is not None:
                r_dec.planned_end[i] = env.now + service.decode_s[i]
            wait_d[i] = env.now - ready
            if not token_at_prefill:
                first[i] = env.now + service.decode_token_s
            yield env.timeout(service.decode_s[i])
            done[i] = env.now

    env.process(_source(env, arrival, request))
    if observer is not None and prefill is not None:
        observer(env, {"prefill": prefill, "decode": decode})
    env.run()
    return Timeline(
        first,
        done,
        {
            "prefill": PoolTimeline(arch.prefill_gpus, wait_p, service.prefill_s.copy()),
            "decode": PoolTimeline(arch.decode_gpus, wait_d, service.decode_s.copy()),
        },
    )
