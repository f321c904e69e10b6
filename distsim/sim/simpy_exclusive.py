"""The seed's model in SimPy, one process per request: the reference implementation.

Monolithic: `gpus` GPUs behind one FCFS queue; a request holds one GPU for its prefill and then
its decode. Disaggregated: a request queues for a prefill GPU, prefills, frees it, queues for a
decode GPU and decodes. Requests arriving at the same instant queue in their draw order.

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


def run_monolithic(
    requests: Requests, arch: Monolithic, service: ServiceTimes, observer: Observer | None = None
) -> Timeline:
    """Simulate the monolithic pool to completion of every request."""
    n = len(requests)
    env = simpy.Environment()
    pool = simpy.Resource(env, capacity=arch.gpus)
    arrival = requests.arrival_s
    wait = np.zeros(n)
    first = np.zeros(n)
    done = np.zeros(n)

    def request(i: int) -> Generator[simpy.Event, None, None]:
        with pool.request() as grant:
            yield grant
            wait[i] = env.now - arrival[i]
            yield env.timeout(service.prefill_s[i])
            first[i] = env.now
            yield env.timeout(service.decode_s[i])
            done[i] = env.now

    env.process(_source(env, arrival, request))
    if observer is not None:
        observer(env, {"gpu": pool})
    env.run()
    busy = service.prefill_s + service.decode_s
    return Timeline(first, done, {"gpu": PoolTimeline(arch.gpus, wait, busy)})


def run_disaggregated(
    requests: Requests,
    arch: Disaggregated,
    service: ServiceTimes,
    observer: Observer | None = None,
) -> Timeline:
    """Simulate the prefill and decode pools to completion of every request."""
    n = len(requests)
    env = simpy.Environment()
    prefill = simpy.Resource(env, capacity=arch.prefill_gpus)
    decode = simpy.Resource(env, capacity=arch.decode_gpus)
    arrival = requests.arrival_s
    wait_p = np.zeros(n)
    wait_d = np.zeros(n)
    first = np.zeros(n)
    done = np.zeros(n)
    token_at_prefill = arch.first_token == "prefill"

    def request(i: int) -> Generator[simpy.Event, None, None]:
        with prefill.request() as grant:
            yield grant
            wait_p[i] = env.now - arrival[i]
            yield env.timeout(service.prefill_s[i])
        ready = env.now
        if token_at_prefill:
            first[i] = ready
        with decode.request() as grant:
            yield grant
            wait_d[i] = env.now - ready
            if not token_at_prefill:
                first[i] = env.now + service.decode_token_s
            yield env.timeout(service.decode_s[i])
            done[i] = env.now

    env.process(_source(env, arrival, request))
    if observer is not None:
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
