"""Routing in the batched engine, worked out by hand on cases small enough to follow step by step.

Truth: the routing rules as documented (docs/hardware.md) applied with pencil and paper to a
linear step time of one second per prompt token, unlimited KV and one-token outputs (each
request is one prefill step; without chunking a step prefills every prompt its instance has
admitted). Both implementations must give these times. The batched engine's routing is also
checked against the exclusive engine (tests/engines/test_batched.py) and the compiled engine
against the SimPy reference (tests/engines/test_fast_batched.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from distsim.sim import batched
from distsim.sim.serving import PoolConfig, ServingConfig
from distsim.sim.step_time import Linear
from distsim.workload.generate import Requests

ONE_S_PER_TOKEN = Linear(0.0, 1.0, 1.0, 0.0, 0.0)


def two_instances(
    routing: str, max_batch_size: int = 8, capacity: float = math.inf
) -> ServingConfig:
    pool = PoolConfig(
        name="gpu", gpus=2, tensor_parallel=1, instances=2, max_batch_size=max_batch_size,
        kv_capacity_tokens=capacity, step=ONE_S_PER_TOKEN, token_budget=None,
    )  # fmt: skip
    return ServingConfig({"gpu": pool}, 0.0, None, "prefill", "output-1", routing)


# R0 (prompt 4) and R1 (prompt 1) at t = 0, R2 (prompt 1) at t = 0.5; one output token each.
REQUESTS = Requests(
    np.array([0.0, 0.0, 0.5]), np.array([4, 1, 1], np.int64), np.array([1, 1, 1], np.int64)
)
# Column 0 (this pool): R0 -> instance 1 (0.7 x 2 = 1.4), R1 -> 1, R2 -> 1.
ROUTE_U = np.array([[0.7, 0.0], [0.9, 0.0], [0.6, 0.0]])

# routing -> (done times, waits) of R0, R1, R2
HAND = {
    # one queue: instance 0 wakes first and admits R0 and R1 into one 5 s step; R2 finds
    # instance 1 idle: [0.5, 1.5]
    "central": ([5.0, 5.0, 1.5], [0.0, 0.0, 0.0]),
    # R0 -> 0 [0, 4], R1 -> 1 [0, 1], R2 -> 0: waits for instance 0 until 4, [4, 5]
    "round_robin": ([4.0, 1.0, 5.0], [0.0, 0.0, 3.5]),
    # all three to instance 1: R0 and R1 together [0, 5], then R2 [5, 6]; instance 0 idles
    "random": ([5.0, 5.0, 6.0], [0.0, 0.0, 4.5]),
    # loads (prompt + output): R0 -> 0 (tie, lowest index; loads 5, 0), R1 -> 1 (5, 2),
    # R2 -> 1 (2 < 5) although it is busy: waits until 1, [1, 2]
    "least_loaded": ([4.0, 1.0, 2.0], [0.0, 0.0, 0.5]),
}


@pytest.mark.parametrize("implementation", ["fast", "simpy"])
@pytest.mark.parametrize("routing", list(HAND))
def test_routing_by_hand(routing: str, implementation: str) -> None:
    trace = batched.run(REQUESTS, two_instances(routing), None, implementation, ROUTE_U)
    done, wait = HAND[routing]
    np.testing.assert_array_equal(trace.done_s, done)
    np.testing.assert_array_equal(trace.first_token_s, done)  # first token at the prefill
    np.testing.assert_array_equal(trace.pools["gpu"].wait_s, wait)


@pytest.mark.parametrize("implementation", ["fast", "simpy"])
def test_least_loaded_stops_counting_a_request_when_it_leaves(implementation: str) -> None:
    """R0 (prompt 4) -> instance 0 and R1 (prompt 1) -> 1 at t = 0; R1 is done at 1, so R2
    (prompt 3) arriving at 1.5 sees loads 5 and 0 and goes to the idle instance 1: [1.5, 4.5].
    Counting R1 still (load 2 < 5 either way) would not show it, so R3 (prompt 1) at 1.75 sees
    5 and 4 and goes to instance 1 too, behind R2: [4.5, 5.5]. Round robin puts R2 on instance
    0 (after R0, [4, 7]) and R3 on the idle instance 1 ([1.75, 2.75])."""
    requests = Requests(
        np.array([0.0, 0.0, 1.5, 1.75]), np.array([4, 1, 3, 1], np.int64), np.ones(4, np.int64)
    )
    trace = batched.run(requests, two_instances("least_loaded"), None, implementation)
    np.testing.assert_array_equal(trace.done_s, [4.0, 1.0, 4.5, 5.5])
    rr = batched.run(requests, two_instances("round_robin"), None, implementation)
    np.testing.assert_array_equal(rr.done_s, [4.0, 1.0, 7.0, 2.75])


@pytest.mark.parametrize("routing", ["round_robin", "least_loaded"])
@pytest.mark.parametrize("implementation", ["fast", "simpy"])
def test_a_preempted_request_returns_to_its_own_instance(routing: str, implementation: str) -> None:
    """KV for 12 tokens per instance, prompts of 2 tokens and 6 output tokens arriving every
    0.25 s: three sequences on an instance outgrow its cache and the newest is preempted. The
    rule checked: it goes back to the front of its own instance's queue, so every step of a
    request runs on the instance it was routed to (round robin: request i on instance i mod 2)."""
    n = 6
    requests = Requests(np.arange(n) * 0.25, np.full(n, 2, np.int64), np.full(n, 6, np.int64))
    steps: list[batched.StepRecord] = []
    trace = batched.run(
        requests, two_instances(routing, capacity=12.0), steps.append, implementation
    )
    assert trace.serving.preemptions > 0, "the case should preempt"
    where: dict[int, set[int]] = {}
    for s in steps:
        for rid in [r for r, _ in s.prefill_chunks] + list(s.decode_ids):
            where.setdefault(rid, set()).add(s.instance)
    assert all(len(v) == 1 for v in where.values()), where
    if routing == "round_robin":
        assert {rid: v.pop() for rid, v in where.items()} == {i: i % 2 for i in range(n)}
