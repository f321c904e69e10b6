"""The compiled batched engine's building blocks: views, step time, event heap, lists, queues.

Small numba functions the kernel (`distsim.sim.batched_kernel`) is made of, each doing one thing
on the state arrays laid out in `distsim.sim.batched_layout`: an unmanaged array view, the step
time of the shipped models, SimPy's event order as a binary heap, an instance's running lists,
a pool's FCFS queue with wake-ups (routed: an instance's own queue, and the routing rules),
preemption, KV blocks, and the optional step log. See `distsim.sim.fast_batched` for how
together they replay the SimPy reference event for event.
"""

from __future__ import annotations

import numba
import numpy as np
from numba.core import cgutils, types
from numba.extending import intrinsic

from distsim.sim.batched_layout import (
    EV_FAIL,
    EV_START,
    EV_START_ARRIVALS,
    EV_T_START,
    EV_WAKE,
    F_QUEUED,
    FIT_A,
    FIT_B,
    FIT_C,
    I_BLOCK,
    I_COUNT,
    I_DTAIL,
    I_KIND,
    I_KV,
    I_LISTS,
    I_LOAD,
    I_ORD,
    I_POOL,
    I_PTAIL,
    I_QHEAD,
    I_QLEN,
    I_QTAIL,
    I_ROUTING,
    I_SLEEP,
    I_TRIG,
    J_CAP,
    J_KV_INTEGRAL,
    J_KV_SINCE,
    LN_DECODE_BASE_S,
    LN_DECODE_PER_SEQ_S,
    LN_KV_TOKEN_S,
    LN_OVERHEAD_S,
    LN_PREFILL_TOKENS_PER_S,
    M_PROFILE,
    M_ROOFLINE,
    NORMAL,
    P_FIRST,
    P_JOINED,
    P_NINST,
    P_QHEAD,
    P_QLEN,
    P_ROUTING,
    PF_DECODE_LARGE,
    PF_DECODE_SMALL,
    PF_MS,
    PF_OVERHEAD_PER_TOKEN_S,
    PF_OVERHEAD_S,
    PF_PREFILL,
    PRIO_SHIFT,
    R_GEN,
    R_KV,
    R_LEFT,
    R_NEXT,
    R_ORD,
    R_OUTPUT,
    R_PDONE,
    R_PREV,
    R_PROMPT,
    R_QNEXT,
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
    RT_LEAST_LOADED,
    RT_RANDOM,
    RT_ROUND_ROBIN,
    S_EID,
    S_ERR_NEED,
    S_ERR_POOL,
    S_ERR_RID,
    S_ERROR,
    S_HSIZE,
    S_NLOG_F,
    S_NLOG_I,
    S_PREEMPTIONS,
    S_RECOMPUTED,
    URGENT,
)
from distsim.sim.jit import njit, njit_inline

# ------------------------------------------------------------------ unmanaged array views


@intrinsic
def _address_as_pointer(typingctx, address):  # noqa: ANN001, ANN202, ARG001
    """An integer address as a void pointer (for `numba.carray`)."""

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202, ARG001
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(address), codegen


@njit
def unmanaged(a: np.ndarray) -> np.ndarray:
    """A view of `a` that numba does not reference-count.

    Why (measured, perf + gdb on the event loop): numba increments and decrements the
    reference count of every array argument of a compiled function that it cannot prove
    balanced (functions with loops and several exits), with atomic instructions; the event
    loop's helpers take a dozen state arrays each, so those atomics took about half of the
    kernel's time. A view with no memory-info pointer makes them no-ops. The caller must keep
    `a` itself alive while the view is used, and never return the view.
    """
    return numba.carray(_address_as_pointer(a.ctypes.data), a.shape, a.dtype)


# ------------------------------------------------------------------ step time


@njit
def step_s(
    code: int, params: np.ndarray, row: int, threshold: int, p: int, sq: float, ctx: int, d: int,
    k: int,
) -> float:  # fmt: skip
    """The step time of `distsim.sim.step_time`'s models, operation for operation (same rounding),
    with the parameters in `params[row]` (columns in `batched_layout`). One exit (see
    `batched_kernel.instance_loop`)."""
    if code == M_ROOFLINE:
        tokens = p + d
        attention = params[row, RL_ATTENTION_FLOPS] * (sq / 2.0 + k)
        flops = params[row, RL_FLOPS_PER_TOKEN] * tokens + attention
        kv = params[row, RL_KV_BYTES_PER_TOKEN]
        moved = params[row, RL_WEIGHT_BYTES] + kv * (k + ctx) + kv * tokens
        compute_s = flops / params[row, RL_FLOPS_PER_S]
        memory_s = moved / params[row, RL_BYTES_PER_S]
        comm_s = 0.0
        if params[row, RL_TENSOR_PARALLEL] > 1.0:
            volume = params[row, RL_RING_FACTOR] * tokens * params[row, RL_HIDDEN]
            volume *= params[row, RL_BYTES_PER_PARAM]
            link_s = volume / params[row, RL_INTERCONNECT_BYTES_PER_S]
            comm_s = params[row, RL_ALLREDUCES] * (params[row, RL_ALLREDUCE_LATENCY_S] + link_s)
        mx = compute_s
        if memory_s > compute_s:
            mx = memory_s
        out = params[row, RL_STEP_OVERHEAD_S] + mx + comm_s
    elif code == M_PROFILE:
        ms = 0.0
        if p > 0:
            a = params[row, PF_PREFILL + FIT_A]
            b = params[row, PF_PREFILL + FIT_B]
            c = params[row, PF_PREFILL + FIT_C]
            ms += a + b * p + c * sq
        if d > 0:
            fit = PF_DECODE_SMALL if d < threshold else PF_DECODE_LARGE
            ms += params[row, fit + FIT_B] * k + params[row, fit + FIT_C] * d
            if p == 0:
                ms += params[row, fit + FIT_A]
        per_token = params[row, PF_OVERHEAD_PER_TOKEN_S] * (p + k)
        out = ms * params[row, PF_MS] + params[row, PF_OVERHEAD_S] + per_token
    else:
        out = params[row, LN_OVERHEAD_S] + p / params[row, LN_PREFILL_TOKENS_PER_S]
        if d > 0:
            out += params[row, LN_DECODE_BASE_S] + params[row, LN_DECODE_PER_SEQ_S] * d
            out += params[row, LN_KV_TOKEN_S] * k
    return out


# ------------------------------------------------------------------ event heap


@njit
def push(ht: np.ndarray, hk: np.ndarray, st: np.ndarray, t: float, kind: int, arg: int) -> None:
    """Schedule an event: a min-heap on (time, priority << 56 | creation order). Process starts
    are URGENT, everything else NORMAL, as in SimPy. (Callers pass `np.int64(_EV_...)`: a bare
    constant would make numba compile one specialisation per literal value.)"""
    prio = NORMAL
    if kind == EV_START or kind == EV_START_ARRIVALS or kind == EV_T_START:  # noqa: SIM109
        prio = URGENT
    pos = st[S_HSIZE]
    st[S_HSIZE] = pos + 1
    key = (prio << PRIO_SHIFT) | st[S_EID]
    st[S_EID] += 1
    while pos > 0:
        parent = (pos - 1) >> 1
        pt = ht[parent]
        if pt < t or (pt == t and hk[0, parent] < key):
            break
        ht[pos] = pt
        hk[0, pos] = hk[0, parent]
        hk[1, pos] = hk[1, parent]
        hk[2, pos] = hk[2, parent]
        pos = parent
    ht[pos] = t
    hk[0, pos] = key
    hk[1, pos] = kind
    hk[2, pos] = arg


@njit
def pop(ht: np.ndarray, hk: np.ndarray, st: np.ndarray) -> tuple[float, int, int]:
    """Remove the earliest event: (time, kind, argument)."""
    t0 = ht[0]
    kind0 = hk[1, 0]
    arg0 = hk[2, 0]
    size = st[S_HSIZE] - 1
    st[S_HSIZE] = size
    if size > 0:
        t = ht[size]
        key = hk[0, size]
        kind = hk[1, size]
        arg = hk[2, size]
        pos = 0
        while True:
            child = 2 * pos + 1
            if child >= size:
                break
            right = child + 1
            if right < size and (
                ht[right] < ht[child] or (ht[right] == ht[child] and hk[0, right] < hk[0, child])
            ):
                child = right
            ct = ht[child]
            if ct < t or (ct == t and hk[0, child] < key):
                ht[pos] = ct
                hk[0, pos] = hk[0, child]
                hk[1, pos] = hk[1, child]
                hk[2, pos] = hk[2, child]
                pos = child
            else:
                break
        ht[pos] = t
        hk[0, pos] = key
        hk[1, pos] = kind
        hk[2, pos] = arg
    return t0, kind0, arg0


# ------------------------------------------------------------------ instances, pools, queues


@njit
def change_kv(ii: np.ndarray, fi: np.ndarray, g: int, delta: int, now: float) -> None:
    fi[J_KV_INTEGRAL, g] += ii[I_KV, g] * (now - fi[J_KV_SINCE, g])
    fi[J_KV_SINCE, g] = now
    ii[I_KV, g] += delta


@njit
def notify(
    ii: np.ndarray, ht: np.ndarray, hk: np.ndarray, st: np.ndarray, g: int, now: float
) -> None:
    if ii[I_SLEEP, g] == 1 and ii[I_TRIG, g] == 0:
        ii[I_TRIG, g] = 1
        push(ht, hk, st, now, np.int64(EV_WAKE), g)


@njit
def link_after(ri: np.ndarray, ii: np.ndarray, g: int, r: int, which: int, prev: int) -> None:
    """Put r on list `which` of instance g right after `prev` (-1: at the head)."""
    base = I_LISTS + 3 * which
    if prev >= 0:
        nxt = ri[prev, R_NEXT]
        ri[prev, R_NEXT] = r
    else:
        nxt = ii[base, g]
        ii[base, g] = r
    ri[r, R_PREV] = prev
    ri[r, R_NEXT] = nxt
    if nxt >= 0:
        ri[nxt, R_PREV] = r
    else:
        ii[base + 1, g] = r
    ii[base + 2, g] += 1


@njit
def unlink(ri: np.ndarray, ii: np.ndarray, g: int, r: int, which: int) -> None:
    base = I_LISTS + 3 * which
    prev = ri[r, R_PREV]
    nxt = ri[r, R_NEXT]
    if prev >= 0:
        ri[prev, R_NEXT] = nxt
    else:
        ii[base, g] = nxt
    if nxt >= 0:
        ri[nxt, R_PREV] = prev
    else:
        ii[base + 1, g] = prev
    ii[base + 2, g] -= 1


@njit
def append_running(ri: np.ndarray, ii: np.ndarray, g: int, r: int) -> None:
    """The reference's `running.append(r)`: newest of the running sequences."""
    ri[r, R_ORD] = ii[I_ORD, g]
    ii[I_ORD, g] += 1
    which = 0 if ri[r, R_LEFT] > 0 else 1
    link_after(ri, ii, g, r, which, ii[I_LISTS + 3 * which + 1, g])
    ii[I_COUNT, g] += 1


@njit
def to_decoding(ri: np.ndarray, ii: np.ndarray, g: int, r: int) -> None:
    """r's prefill ended: it moves to the decoding list, at its place in running order
    (usually at or near the tail)."""
    unlink(ri, ii, g, r, np.int64(0))
    prev = ii[I_DTAIL, g]
    order = ri[r, R_ORD]
    while prev >= 0 and ri[prev, R_ORD] > order:
        prev = ri[prev, R_PREV]
    link_after(ri, ii, g, r, np.int64(1), prev)


@njit
def submit(
    p: int,
    r: int,
    front: int,
    now: float,
    ri: np.ndarray,
    rf: np.ndarray,
    ii: np.ndarray,
    fi: np.ndarray,
    pi: np.ndarray,
    qbuf: np.ndarray,
    ht: np.ndarray,
    hk: np.ndarray,
    st: np.ndarray,
    tmp_g: np.ndarray,
    tmp_free: np.ndarray,
) -> None:
    """Join pool p's queue (front: a preempted sequence), then wake the idle instances, most
    free KV first (a stable sort: ties keep the lowest index first). In a routed pool: join
    the routed instance's own queue and wake it (a preempted sequence: `requeue_front`)."""
    rf[r, F_QUEUED] = now
    if pi[P_ROUTING, p] != 0:
        g = route(p, r, ri, ii, pi, qbuf)
        own_queue_push(ri, ii, g, r, np.int64(0))
        notify(ii, ht, hk, st, g, now)
        return
    size = qbuf.shape[1]
    if front:
        head = pi[P_QHEAD, p] - 1
        if head < 0:
            head += size
        pi[P_QHEAD, p] = head
        qbuf[p, head] = r
    else:
        pos = pi[P_QHEAD, p] + pi[P_QLEN, p]
        if pos >= size:
            pos -= size
        qbuf[p, pos] = r
    pi[P_QLEN, p] += 1
    first = pi[P_FIRST, p]
    m = 0
    for g in range(first, first + pi[P_NINST, p]):
        if ii[I_SLEEP, g] == 1 and ii[I_TRIG, g] == 0:
            free = fi[J_CAP, g] - ii[I_KV, g]
            j = m
            while j > 0 and tmp_free[j - 1] < free:
                tmp_free[j] = tmp_free[j - 1]
                tmp_g[j] = tmp_g[j - 1]
                j -= 1
            tmp_free[j] = free
            tmp_g[j] = g
            m += 1
    for j in range(m):
        notify(ii, ht, hk, st, tmp_g[j], now)


@njit
def route_tokens(ri: np.ndarray, ii: np.ndarray, g: int, r: int) -> int:
    """What r counts toward instance g's load: the tokens its pool works on (prefill: prompt,
    decode pool (pool 1 of a disaggregated architecture): output, monolithic: both)."""
    if ii[I_KIND, g] == 1:
        return ri[r, R_PROMPT]
    if ii[I_POOL, g] == 1:
        return ri[r, R_OUTPUT]
    return ri[r, R_PROMPT] + ri[r, R_OUTPUT]


@njit
def route(p: int, r: int, ri: np.ndarray, ii: np.ndarray, pi: np.ndarray, qbuf: np.ndarray) -> int:
    """The instance (global index) a request joining routed pool p is sent to: round robin in
    join order, the drawn one (random), or the fewest outstanding tokens, ties to the lowest
    index (least loaded, which then counts r's tokens there)."""
    first = pi[P_FIRST, p]
    n = pi[P_NINST, p]
    mode = pi[P_ROUTING, p]
    if mode == RT_ROUND_ROBIN:
        g = first + pi[P_JOINED, p] % n
    elif mode == RT_RANDOM:
        g = first + qbuf[p, r]  # drawn before the run (a routed pool's ring buffer is unused)
    else:
        g = first
        for h in range(first + 1, first + n):
            if ii[I_LOAD, h] < ii[I_LOAD, g]:
                g = h
        ii[I_LOAD, g] += route_tokens(ri, ii, g, r)
    pi[P_JOINED, p] += 1
    return g


@njit
def leave(ri: np.ndarray, ii: np.ndarray, g: int, r: int) -> None:
    """r leaves instance g's pool (done, or prefilled): its tokens stop counting (least loaded)."""
    if ii[I_ROUTING, g] == RT_LEAST_LOADED:
        ii[I_LOAD, g] -= route_tokens(ri, ii, g, r)


@njit
def own_queue_push(ri: np.ndarray, ii: np.ndarray, g: int, r: int, front: int) -> None:
    """Put r at the back (or front) of routed instance g's own FCFS queue."""
    if front:
        ri[r, R_QNEXT] = ii[I_QHEAD, g]
        ii[I_QHEAD, g] = r
        if ii[I_QTAIL, g] < 0:
            ii[I_QTAIL, g] = r
    else:
        ri[r, R_QNEXT] = -1
        tail = ii[I_QTAIL, g]
        if tail >= 0:
            ri[tail, R_QNEXT] = r
        else:
            ii[I_QHEAD, g] = r
        ii[I_QTAIL, g] = r
    ii[I_QLEN, g] += 1


@njit
def own_queue_pop(ri: np.ndarray, ii: np.ndarray, g: int) -> None:
    r = ii[I_QHEAD, g]
    head = ri[r, R_QNEXT]
    ii[I_QHEAD, g] = head
    if head < 0:
        ii[I_QTAIL, g] = -1
    ii[I_QLEN, g] -= 1


@njit
def queue_length(g: int, p: int, ii: np.ndarray, pi: np.ndarray) -> int:
    """Requests waiting for instance g: its own queue (routed) or its pool's (central)."""
    return ii[I_QLEN, g] if ii[I_ROUTING, g] != 0 else pi[P_QLEN, p]


@njit
def queue_head(g: int, p: int, ii: np.ndarray, pi: np.ndarray, qbuf: np.ndarray) -> int:
    return ii[I_QHEAD, g] if ii[I_ROUTING, g] != 0 else qbuf[p, pi[P_QHEAD, p]]


@njit
def queue_pop(
    g: int, p: int, ri: np.ndarray, ii: np.ndarray, pi: np.ndarray, qbuf: np.ndarray
) -> None:
    if ii[I_ROUTING, g] != 0:
        own_queue_pop(ri, ii, g)
    else:
        pop_queue(p, pi, qbuf)


@njit
def pop_queue(p: int, pi: np.ndarray, qbuf: np.ndarray) -> int:
    head = pi[P_QHEAD, p]
    r = qbuf[p, head]
    head += 1
    if head == qbuf.shape[1]:
        head = 0
    pi[P_QHEAD, p] = head
    pi[P_QLEN, p] -= 1
    return r


@njit
def fail(
    st: np.ndarray, ht: np.ndarray, hk: np.ndarray, r: int, need: int, p: int, now: float
) -> None:
    """A request does not fit an empty instance: the process dies; SimPy re-raises its error
    when the failure event (NORMAL, now) is processed."""
    if st[S_ERROR] == 0:
        st[S_ERROR] = 1
        st[S_ERR_RID] = r
        st[S_ERR_NEED] = need
        st[S_ERR_POOL] = p
    push(ht, hk, st, now, np.int64(EV_FAIL), np.int64(0))


@njit
def log_put(buf: np.ndarray, st: np.ndarray, slot: int, value: float) -> None:
    """Append to a step-log buffer; past its end only count (the caller reruns, larger)."""
    k = st[slot]
    if k < buf.shape[0]:
        buf[k] = value
    st[slot] = k + 1


@njit
def log_step(
    log_i: np.ndarray, log_f: np.ndarray, st: np.ndarray, p: int, local: int, now: float,
    dt: float, kv_tokens: int, nchunks: int, ndec: int,
) -> None:  # fmt: skip
    log_put(log_i, st, np.int64(S_NLOG_I), p)
    log_put(log_i, st, np.int64(S_NLOG_I), local)
    log_put(log_i, st, np.int64(S_NLOG_I), kv_tokens)
    log_put(log_i, st, np.int64(S_NLOG_I), nchunks)
    log_put(log_i, st, np.int64(S_NLOG_I), ndec)
    log_put(log_f, st, np.int64(S_NLOG_F), now)
    log_put(log_f, st, np.int64(S_NLOG_F), dt)


@njit_inline
def held(tokens: int, block: int) -> int:
    """KV held for a context of `tokens`: rounded up to whole blocks."""
    return tokens if block == 1 else -(-tokens // block) * block


@njit
def preempt_newest(
    g: int, now: float, ri: np.ndarray, rf: np.ndarray, ii: np.ndarray, fi: np.ndarray,
    pi: np.ndarray, qbuf: np.ndarray, ht: np.ndarray, hk: np.ndarray, st: np.ndarray,
    tmp_g: np.ndarray, tmp_free: np.ndarray,
) -> None:  # fmt: skip
    """Preempt the newest running sequence (the later of the two lists' tails): free its KV and
    put it back at the front of its pool's queue (routed: its own instance's) to recompute its
    context."""
    p = ii[I_POOL, g]
    victim = ii[I_PTAIL, g]
    last_decode = ii[I_DTAIL, g]
    if victim < 0 or (last_decode >= 0 and ri[last_decode, R_ORD] > ri[victim, R_ORD]):
        victim = last_decode
    unlink(ri, ii, g, victim, 0 if ri[victim, R_LEFT] > 0 else 1)
    ii[I_COUNT, g] -= 1
    change_kv(ii, fi, g, -held(ri[victim, R_KV], ii[I_BLOCK, g]), now)
    ri[victim, R_KV] = 0
    context = ri[victim, R_PROMPT] + ri[victim, R_GEN]
    st[S_PREEMPTIONS] += 1
    st[S_RECOMPUTED] += context - ri[victim, R_LEFT]
    ri[victim, R_LEFT] = context
    ri[victim, R_PDONE] = 0
    if ii[I_ROUTING, g] != 0:
        rf[victim, F_QUEUED] = now
        own_queue_push(ri, ii, g, victim, np.int64(1))
        notify(ii, ht, hk, st, g, now)
    else:
        submit(p, victim, np.int64(1), now, ri, rf, ii, fi, pi, qbuf, ht, hk, st, tmp_g, tmp_free)
