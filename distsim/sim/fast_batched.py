"""The batched engine as one compiled event loop that replays the SimPy reference exactly.

Same model, same signature and the same numbers as `distsim.sim.batched_simpy` (the reference),
to the last bit of every timestamp, because it does not re-derive the model: it re-enacts the
reference's SimPy event sequence. SimPy processes events in (time, priority, creation order);
process starts are URGENT, everything else NORMAL. Each generator of the reference becomes a small
state machine here, and every event the reference schedules is scheduled here at the same
instant, with the same priority, in the same order, so ties (simultaneous arrivals, step ends,
KV-transfer hand-overs) resolve the same way:

- instance processes (monolithic/decode and prefill): start (URGENT at 0), wake-up events
  (`notify`, NORMAL, now), step timeouts (now + dt);
- the arrival process: start (URGENT at 0), then a timeout of `t - now` per arrival gap;
- a KV transfer: its process start (URGENT, now), the link grant (NORMAL, now, only when the
  link is free — SimPy's `Resource` grants the head of its FCFS queue when a request is made or a
  release event is processed), the transfer timeout (now + dt), and the release event;
- a failing process (a request too big for an instance) ends the run when SimPy would re-raise
  its exception: when its failure event, scheduled NORMAL at the failure time, is processed.
Events the reference schedules but nothing waits on (process ends) are left out: they only
advance SimPy's counter, which never changes the relative order of the others.

Floating-point work is done in the same order with the same operands: times are `now + delay`,
step times use the same expressions (`_step_s`, checked against `distsim.sim.step_time` bit for bit
by tests), and the per-pool and per-request sums accumulate in the same sequence. So the traces
are identical, not just close (tests/engines/test_fast_batched.py compares them exactly).

Why this technique (measured: cProfile of the reference, benchmarks/bench_batched.py): the
SimPy version spends two thirds of its time in the model's per-step Python loops over the batch
(composition, accounting, KV growth) and one third in SimPy's event machinery, so a hand-written
Python heapq loop would gain at most ~1.5x. The scheduling is sequential and state-dependent
(admission, preemption, the most-free-KV choice among idle instances) and batches are small, so
numpy has nothing to vectorise. Compiled with numba (already a dependency, `distsim.sim.jit`),
the loop is over an order of magnitude faster end to end (benchmarks/bench_batched.py prints both).

Bookkeeping that differs from the reference without changing any result: the running list is
kept as two lists (prefilling, decoding), each in the reference's order, and a step's busy time
is added to its sequences when the step ends rather than when it starts (per request the sums
are the same, in the same order); decodes are settled before prefill chunks at a step's end
(different sequences, and KV changes at one instant leave the KV integral unchanged).

Where the parts live: `distsim.sim.batched_layout` names the columns of the state arrays,
`distsim.sim.batched_primitives` holds the small numba building blocks (event heap, step time,
lists, queues), `distsim.sim.batched_kernel` the processes and the event loop; this module
prepares the inputs, runs the kernel and turns its arrays into the reference's `Timeline`.

Step models other than the three shipped ones (`Roofline`, `ProfileFit`, `Linear`) cannot be
compiled; `run` then falls back to the reference. The optional checker receives the same
`StepRecord`s as with the reference, in the same order, after the compiled loop has run.
"""

from __future__ import annotations

import math

import numpy as np

from distsim.errors import SimulationError
from distsim.sim import batched_simpy
from distsim.sim.batched_kernel import kernel
from distsim.sim.batched_layout import (
    FIT_A,
    FIT_B,
    FIT_C,
    LN_DECODE_BASE_S,
    LN_DECODE_PER_SEQ_S,
    LN_KV_TOKEN_S,
    LN_OVERHEAD_S,
    LN_PREFILL_TOKENS_PER_S,
    LOG_INTS,
    M_LINEAR,
    M_PROFILE,
    M_ROOFLINE,
    NPARAM,
    P_IN,
    PF_DECODE_LARGE,
    PF_DECODE_SMALL,
    PF_MS,
    PF_OVERHEAD_PER_TOKEN_S,
    PF_OVERHEAD_S,
    PF_PREFILL,
    RL_ALLREDUCE_LATENCY_S,
    RL_ALLREDUCES,
    RL_ATTENTION_FLOPS,
    RL_BYTES_PER_PARAM,
    RL_BYTES_PER_S,
    RL_FLOPS_PER_S,
    RL_FLOPS_PER_TOKEN,
    RL_HIDDEN,
    RL_INTERCONNECT_BYTES_PER_S,
    RL_KV_BYTES_PER_TOKEN,
    RL_RING_FACTOR,
    RL_STEP_OVERHEAD_S,
    RL_TENSOR_PARALLEL,
    RL_WEIGHT_BYTES,
    ROUTING_CODES,
    S_ERR_NEED,
    S_ERR_POOL,
    S_ERR_RID,
    S_ERROR,
    S_NLOG_C,
    S_NLOG_D,
    S_NLOG_F,
    S_NLOG_I,
    S_PREEMPTIONS,
    S_RECOMPUTED,
)
from distsim.sim.batched_primitives import step_s as _step_s  # noqa: F401 (tests compare it)
from distsim.sim.batched_simpy import Checker, StepRecord
from distsim.sim.serving import ServingConfig
from distsim.sim.step_time import MS, Linear, ProfileFit, Roofline
from distsim.sim.timeline import PoolTimeline, ServingStats, Timeline, TransferLog
from distsim.spec.hardware import GB, TERA
from distsim.workload.generate import Requests


def _step_params(step: object) -> tuple[int, np.ndarray, int] | None:
    """(model code, parameters, threshold) for `step_s`, or None for a model it cannot run.
    Sub-expressions that do not depend on the step are evaluated here exactly as
    `distsim.sim.step_time` evaluates them, so the compiled arithmetic rounds identically."""
    prm = np.zeros(NPARAM)
    if type(step) is Roofline:
        m, g, t = step.model, step.gpu, step.tensor_parallel
        prm[RL_FLOPS_PER_TOKEN] = m.flops_per_token
        prm[RL_ATTENTION_FLOPS] = 4.0 * m.layers * m.hidden
        prm[RL_WEIGHT_BYTES] = m.weight_bytes
        prm[RL_KV_BYTES_PER_TOKEN] = m.kv_bytes_per_token
        prm[RL_FLOPS_PER_S] = t * g.peak_tflops * TERA * g.mfu
        prm[RL_BYTES_PER_S] = t * g.hbm_gb_s * GB * g.mbu
        prm[RL_TENSOR_PARALLEL] = t
        prm[RL_RING_FACTOR] = 2.0 * (t - 1) / t
        prm[RL_HIDDEN] = m.hidden
        prm[RL_BYTES_PER_PARAM] = m.bytes_per_param
        prm[RL_ALLREDUCES] = 2 * m.layers
        prm[RL_ALLREDUCE_LATENCY_S] = g.allreduce_latency_s
        prm[RL_INTERCONNECT_BYTES_PER_S] = g.interconnect_gb_s * GB
        prm[RL_STEP_OVERHEAD_S] = g.step_overhead_s
        return M_ROOFLINE, prm, 0
    if type(step) is ProfileFit:
        for offset, fit in (
            (PF_PREFILL, step.prefill),
            (PF_DECODE_SMALL, step.decode_small),
            (PF_DECODE_LARGE, step.decode_large),
        ):
            prm[offset + FIT_A], prm[offset + FIT_B], prm[offset + FIT_C] = fit
        prm[PF_MS] = MS
        prm[PF_OVERHEAD_S] = step.overhead_s
        prm[PF_OVERHEAD_PER_TOKEN_S] = step.overhead_per_token_s
        return M_PROFILE, prm, int(step.threshold)
    if type(step) is Linear:
        prm[LN_OVERHEAD_S] = step.overhead_s
        prm[LN_PREFILL_TOKENS_PER_S] = step.prefill_tokens_per_s
        prm[LN_DECODE_BASE_S] = step.decode_base_s
        prm[LN_DECODE_PER_SEQ_S] = step.decode_per_seq_s
        prm[LN_KV_TOKEN_S] = step.kv_token_s
        return M_LINEAR, prm, 0
    return None


# ------------------------------------------------------------------ Python side


def _records(
    plan: ServingConfig,
    names: list[str],
    li: np.ndarray,
    lf: np.ndarray,
    lc: np.ndarray,
    ld: np.ndarray,
) -> list[StepRecord]:
    """The logged steps as the reference's StepRecords (same fields, same Python types)."""
    ints = li.reshape(-1, LOG_INTS).tolist()
    floats = lf.reshape(-1, 2).tolist()
    chunks = lc.tolist()
    decodes = ld.tolist()
    out = []
    c = d = 0
    for (p, inst, kv_tokens, nchunks, ndec), (start, dt) in zip(ints, floats, strict=True):
        pool = plan.pools[names[p]]
        out.append(
            StepRecord(
                pool=pool.name,
                instance=inst,
                start_s=start,
                duration_s=dt,
                prefill_chunks=tuple(
                    (chunks[k], chunks[k + 1]) for k in range(c, c + 2 * nchunks, 2)
                ),
                decode_ids=tuple(decodes[d : d + ndec]),
                kv_used_tokens=kv_tokens,
                kv_capacity_tokens=pool.kv_capacity_tokens,
                max_batch_size=pool.max_batch_size,
                token_budget=pool.token_budget,
            )
        )
        c += 2 * nchunks
        d += ndec
    return out


def run(
    requests: Requests,
    plan: ServingConfig,
    checker: Checker | None = None,
    route_u: np.ndarray | None = None,
) -> Timeline:
    """Simulate one architecture's batched instances until every request has finished: the
    same Timeline as `batched_simpy.run`, bit for bit. Falls back to the reference for a step-time
    model it cannot compile."""
    names = list(plan.pools)
    disaggregated = "gpu" not in plan.pools
    # Process order of the reference: the entry pool's instances first (gpu, or prefill), then
    # the decode pool's; pool 0 is where arrivals go.
    order = ["prefill", "decode"] if disaggregated else ["gpu"]
    if sorted(order) != sorted(names):
        return batched_simpy.run(requests, plan, checker, route_u)  # pragma: no cover
    names = order
    npools = len(names)
    pool_in = np.zeros((P_IN, npools), np.int64)
    pf = np.zeros((npools, NPARAM))
    pool_cap = np.zeros(npools)
    first = 0
    for p, name in enumerate(names):
        pool = plan.pools[name]
        params = _step_params(pool.step)
        if params is None:
            return batched_simpy.run(requests, plan, checker, route_u)
        code, prm, threshold = params
        pf[p] = prm
        pool_in[:, p] = (
            pool.instances,
            first,
            pool.max_batch_size,
            -1 if pool.token_budget is None else pool.token_budget,
            pool.tensor_parallel * pool.pipeline_parallel,  # GPUs per instance
            code,
            threshold,
            -1 if pool.prefill_cap is None else pool.prefill_cap,
            pool.kv_block_tokens,
            ROUTING_CODES[plan.routing],
            pool.kv_admit_reserve_tokens,
        )
        pool_cap[p] = pool.kv_capacity_tokens
        first += pool.instances
    link_bytes_per_s = (plan.kv_link_gb_s or 1.0) * GB
    arrays = (
        np.ascontiguousarray(requests.arrival_s, dtype=np.float64),
        np.ascontiguousarray(requests.prompt_tokens, dtype=np.int64),
        np.ascontiguousarray(requests.output_tokens, dtype=np.int64),
        _drawn_instances(plan, names, route_u, len(requests)),
    )
    scalars = (
        1 if disaggregated else -1,
        plan.first_token == "prefill",
        plan.decode_steps == "output-1",
        float(plan.kv_bytes_per_token),
        float(link_bytes_per_s),
    )
    # Step-log buffers (a checker only): a guess, then exactly what the first run needed.
    wanted = (0, 0, 0, 0) if checker is None else (16 * len(requests) + 1024,) * 4
    while True:
        logs = (
            np.empty(wanted[0], np.int64), np.empty(wanted[1]), np.empty(wanted[2], np.int64),
            np.empty(wanted[3], np.int64),
        )  # fmt: skip
        first_s, done_s, wait, busy, acc, st, tr_i, tr_f, kv_state = kernel(
            *arrays, pool_in, pf, pool_cap, *scalars, checker is not None, *logs
        )
        used = tuple(int(st[k]) for k in (S_NLOG_I, S_NLOG_F, S_NLOG_C, S_NLOG_D))
        if all(u <= w for u, w in zip(used, wanted, strict=True)):
            break
        wanted = used  # the run is deterministic: the same again, with room for every entry
    if checker is not None:
        li, lf, lc, ld = (log[:u] for log, u in zip(logs, used, strict=True))
        for record in _records(plan, names, li, lf, lc, ld):
            checker(record)
    if st[S_ERROR]:
        rid, need = int(st[S_ERR_RID]), int(st[S_ERR_NEED])
        pool = plan.pools[names[int(st[S_ERR_POOL])]]
        raise SimulationError(
            f"request {rid} needs {need} KV tokens ({int(requests.prompt_tokens[rid])} prompt + "
            f"{int(requests.output_tokens[rid])} output) but an instance of the {pool.name} "
            f"pool holds {pool.kv_capacity_tokens:.0f}; cap the token distributions with `max`"
        )
    return _trace(requests, plan, names, first_s, done_s, wait, busy, acc, st, tr_i, tr_f, kv_state)


def _drawn_instances(
    plan: ServingConfig, names: list[str], route_u: np.ndarray | None, n: int
) -> np.ndarray:
    """`random`: the instance (index within its pool) each request is sent to, per pool, from
    the routing draws as the reference computes it (min(int(u x instances), instances - 1))."""
    out = np.zeros((n, 2), np.int64)
    if plan.routing != "random":
        return out
    if route_u is None:
        raise ValueError("routing: random needs the replication's routing draws (route_u)")
    for p, name in enumerate(names):
        k = plan.pools[name].instances
        u = np.asarray(route_u[:, 1 if name == "decode" else 0], dtype=np.float64)
        out[:, p] = np.minimum((u * k).astype(np.int64), k - 1)
    return out


def _trace(
    requests: Requests,
    plan: ServingConfig,
    names: list[str],
    first_s: np.ndarray,
    done_s: np.ndarray,
    wait: np.ndarray,
    busy: np.ndarray,
    acc: np.ndarray,
    st: np.ndarray,
    tr_i: np.ndarray,
    tr_f: np.ndarray,
    kv_state: np.ndarray,
) -> Timeline:
    """The reference's end-of-run bookkeeping on the kernel's arrays (same expressions)."""
    unfinished = np.flatnonzero(np.isnan(done_s))
    if unfinished.size:
        raise SimulationError(
            f"{unfinished.size} request(s) never finished (first: request {unfinished[0]}); "
            "the batched engine stalled"
        )
    end_s = float(done_s.max()) if len(requests) else 0.0
    index = {name: p for p, name in enumerate(names)}
    batch_mean: dict[str, float] = {}
    kv_mean: dict[str, float] = {}
    for name, pool in plan.pools.items():
        p = index[name]
        t = float(acc[0, p])
        batch_mean[name] = float(acc[1, p]) / t if t > 0 else float("nan")
        cap = pool.kv_capacity_tokens
        if math.isinf(cap) or end_s <= 0:
            kv_mean[name] = float("nan")
        else:
            total = 0.0
            first = sum(plan.pools[q].instances for q in names[:p])
            for g in range(first, first + pool.instances):
                integral, used, since = kv_state[:, g].tolist()
                total += integral + int(used) * (end_s - since)
            kv_mean[name] = total / (cap * pool.instances * end_s)
    order = np.argsort(tr_i[0], kind="stable")
    stats = ServingStats(
        preemptions=int(st[S_PREEMPTIONS]),
        recomputed_tokens=int(st[S_RECOMPUTED]),
        batch_size_mean=batch_mean,
        kv_use_mean=kv_mean,
        transfers=TransferLog(
            request=tr_i[0][order],
            link=tr_i[1][order],
            start_s=tr_f[0][order],
            end_s=tr_f[1][order],
        ),
    )
    pool_timelines = {
        name: PoolTimeline(pool.gpus, wait[index[name]], busy[index[name]])
        for name, pool in plan.pools.items()
    }
    return Timeline(first_s, done_s, pool_timelines, serving=stats)


def load_kernels() -> None:
    """Compile the kernel now, or load it from numba's on-disk cache (never needed for
    correctness; lets a driver pay it once before starting workers or timing)."""
    pool_in = np.zeros((P_IN, 1), np.int64)
    pool_in[:, 0] = (1, 0, 1, -1, 1, M_LINEAR, 0, -1, 1, 0, 0)
    pf = np.zeros((1, NPARAM))
    pf[0, :2] = (0.0, 1.0)
    one = np.ones(1, np.int64)
    logs = (np.empty(8, np.int64), np.empty(8), np.empty(8, np.int64), np.empty(8, np.int64))
    kernel(
        np.zeros(1),
        one,
        one,
        np.zeros((1, 2), np.int64),
        pool_in,
        pf,
        np.full(1, np.inf),
        -1,
        True,
        True,
        0.0,
        GB,
        True,
        *logs,
    )
