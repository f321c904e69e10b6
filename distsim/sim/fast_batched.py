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
the loop costs ~2-4 us a request against ~75-125 us (about 30x end to end, metrics included).

Bookkeeping that differs from the reference without changing any result: the running list is
kept as two lists (prefilling, decoding), each in the reference's order, and a step's busy time
is added to its sequences when the step ends rather than when it starts (per request the sums
are the same, in the same order); decodes are settled before prefill chunks at a step's end
(different sequences, and KV changes at one instant leave the KV integral unchanged).

Step models other than the three shipped ones (`Roofline`, `ProfileFit`, `Linear`) cannot be
compiled; `run` then falls back to the reference. The optional checker receives the same
`StepRecord`s as with the reference, in the same order, after the compiled loop has run.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba.core import cgutils, types
from numba.extending import intrinsic

from distsim.errors import SimulationError
from distsim.sim import batched_simpy
from distsim.sim.batched_simpy import Checker, StepRecord
from distsim.sim.jit import njit
from distsim.sim.serving import ServingConfig
from distsim.sim.step_time import MS, Linear, ProfileFit, Roofline
from distsim.sim.timeline import PoolTimeline, ServingStats, Timeline, TransferLog
from distsim.spec.hardware import GB, TERA
from distsim.workload.generate import Requests

# ------------------------------------------------------------------ layout of the state arrays

# Event kinds.
_EV_START = 0  # an instance process starts (URGENT)
_EV_START_ARRIVALS = 1  # the arrival process starts (URGENT)
_EV_WAKE = 2  # a sleeping instance was notified
_EV_STEP = 3  # an instance's step timeout
_EV_ARRIVAL = 4  # the arrival process's timeout
_EV_T_START = 5  # a KV-transfer process starts (URGENT)
_EV_T_GRANT = 6  # a link request was granted
_EV_T_DONE = 7  # a transfer's timeout
_EV_RELEASE = 8  # a link release event
_EV_FAIL = 9  # a failed process: SimPy re-raises its exception here
_URGENT = 0
_NORMAL = 1
_PRIO_SHIFT = 56  # heap key = priority << 56 | creation order

# Per-request integers, ri[request, field] (a request's fields share a cache line or two).
_R_PROMPT = 0
_R_OUTPUT = 1
_R_GEN = 2  # tokens generated
_R_LEFT = 3  # prompt (or recompute) tokens still to prefill on the current instance
_R_PDONE = 4  # tokens of the current prefill already in the cache
_R_KV = 5  # KV tokens held or reserved on the current instance
_R_NEEDS_T = 6  # 1 while the prompt's KV has to move to the decode instance
_R_SOURCE = 7  # prefill instance (global index) holding the prompt's KV until the transfer ends
_R_NEXT = 8  # the instance list (prefilling or decoding) the sequence is on, doubly linked
_R_PREV = 9
_R_CHUNK = 10  # prompt tokens in the current step (0: not a prefill chunk of it)
_R_ORD = 11  # when it joined its instance's running list (the reference's list order)
_R_TNEXT = 12  # a link's FCFS request queue (singly linked)
_R_LINK = 13  # the decode instance (global index) whose link carries the transfer
_R_BNEXT = 14  # a prefill instance's current batch (singly linked)
_NRI = 15

# Per-request floats, rf[request, field].
_F_QUEUED = 0
_F_TSTART = 1
_F_FIRST = 2
_F_DONE = 3
_NRF = 4

# Per-instance integers, ii[field, instance].
_I_POOL = 0
_I_LOCAL = 1  # index within its pool (StepRecord.instance, the transfer log's link)
_I_KIND = 2  # 0: monolithic or decode instance, 1: prefill instance
_I_KV = 3  # KV tokens in use
_I_SLEEP = 4  # 1 while waiting on a wake-up event (the reference's `wake is not None`)
_I_TRIG = 5  # 1 once that event was triggered
_I_COUNT = 6  # running sequences (the reference's `running`): prefilling + decoding
_I_ORD = 7  # counter giving running sequences their order
_I_SPARE = 8
_I_IN_T = 9  # transfers admitted, not yet arrived
_I_USERS = 10  # link in use (0/1)
_I_LQHEAD = 11  # link request queue
_I_LQTAIL = 12
_I_SNAP = 13  # prefill chunks in the step: the first of the prefilling list
_I_SNAP_DEC = 14  # decodes in the step: the first of the decoding list
_I_BHEAD = 15  # prefill batch
_I_BTAIL = 16
_I_BCOUNT = 17
_I_FIRST_AT_PREFILL = 18
# The reference's running list, split in two lists that each keep its order: sequences with
# prompt left to prefill (list 0) and decoding ones (list 1); head, tail, length of list k at
# _I_LISTS + 3 k.
_I_LISTS = 19
_I_PHEAD = 19
_I_PTAIL = 20
_I_NPRE = 21
_I_DHEAD = 22
_I_DTAIL = 23
_I_NDEC = 24
_NII = 25

# Per-instance floats, fi[field, instance].
_J_KV_INTEGRAL = 0
_J_KV_SINCE = 1
_J_CAP = 2
_J_SHARE = 3  # the current step's GPU-seconds per sequence
_NFI = 4

# Per-pool integers, pi[field, pool] (the first _P_IN rows are inputs).
_P_NINST = 0
_P_FIRST = 1  # global index of its first instance
_P_MBS = 2
_P_BUDGET = 3  # -1: none
_P_TP = 4
_P_MODEL = 5
_P_THRESHOLD = 6
_P_IN = 7
_P_QHEAD = 7  # the pool's FCFS queue, a ring buffer
_P_QLEN = 8
_NPI = 9

# Step-time model codes and parameter layouts, pf[pool, k].
_M_ROOFLINE = 0
_M_PROFILE = 1
_M_LINEAR = 2
_NPARAM = 14

# Scalars, st[k].
_S_HSIZE = 0
_S_EID = 1
_S_PREEMPTIONS = 2
_S_RECOMPUTED = 3
_S_NEXT_ARRIVAL = 4
_S_NTRANSFERS = 5
_S_ERROR = 6  # 1: a request did not fit
_S_ERR_RID = 7
_S_ERR_NEED = 8
_S_ERR_POOL = 9
_S_LOG = 10  # 1: record every step for a checker
_S_NLOG_I = 11  # entries written (or wanted, if the buffer was too small) in each step log
_S_NLOG_F = 12
_S_NLOG_C = 13
_S_NLOG_D = 14
_NST = 15

# Step log rows (ints): pool, instance, kv tokens, chunks, decodes.
_LOG_INTS = 5


# ------------------------------------------------------------------ unmanaged array views


@intrinsic
def _address_as_pointer(typingctx, address):  # noqa: ANN001, ANN202, ARG001
    """An integer address as a void pointer (for `numba.carray`)."""

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202, ARG001
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(address), codegen


@njit
def _unmanaged(a: np.ndarray) -> np.ndarray:
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
def _step_s(
    code: int, params: np.ndarray, row: int, threshold: int, p: int, sq: float, ctx: int, d: int,
    k: int,
) -> float:  # fmt: skip
    """The step time of `distsim.sim.step_time`'s models, operation for operation (same rounding),
    with the parameters in `params[row]` (see `_step_params`). One exit (see _instance_loop)."""
    if code == _M_ROOFLINE:
        tokens = p + d
        flops = params[row, 0] * tokens + params[row, 1] * (sq / 2.0 + k)
        moved = params[row, 2] + params[row, 3] * (k + ctx) + params[row, 3] * tokens
        compute_s = flops / params[row, 4]
        memory_s = moved / params[row, 5]
        comm_s = 0.0
        if params[row, 6] > 1.0:
            volume = params[row, 7] * tokens * params[row, 8] * params[row, 9]
            comm_s = params[row, 10] * (params[row, 11] + volume / params[row, 12])
        mx = compute_s
        if memory_s > compute_s:
            mx = memory_s
        out = params[row, 13] + mx + comm_s
    elif code == _M_PROFILE:
        ms = 0.0
        if p > 0:
            ms += params[row, 0] + params[row, 1] * p + params[row, 2] * sq
        if d > 0:
            o = 3 if d < threshold else 6
            ms += params[row, o + 1] * k + params[row, o + 2] * d
            if p == 0:
                ms += params[row, o]
        out = ms * params[row, 9]
    else:
        out = params[row, 0] + p / params[row, 1]
        if d > 0:
            out += params[row, 2] + params[row, 3] * d
            out += params[row, 4] * k
    return out


def _step_params(step: object) -> tuple[int, np.ndarray, int] | None:
    """(model code, parameters, threshold) for `_step_s`, or None for a model it cannot run.
    Sub-expressions that do not depend on the step are evaluated here exactly as
    `distsim.sim.step_time` evaluates them, so the compiled arithmetic rounds identically."""
    prm = np.zeros(_NPARAM)
    if type(step) is Roofline:
        m, g, t = step.model, step.gpu, step.tensor_parallel
        prm[:] = (
            m.flops_per_token,
            4.0 * m.layers * m.hidden,
            m.weight_bytes,
            m.kv_bytes_per_token,
            t * g.peak_tflops * TERA * g.mfu,
            t * g.hbm_gb_s * GB * g.mbu,
            t,
            2.0 * (t - 1) / t,
            m.hidden,
            m.bytes_per_param,
            2 * m.layers,
            g.allreduce_latency_s,
            g.interconnect_gb_s * GB,
            g.step_overhead_s,
        )
        return _M_ROOFLINE, prm, 0
    if type(step) is ProfileFit:
        prm[:10] = (*step.prefill, *step.decode_small, *step.decode_large, MS)
        return _M_PROFILE, prm, int(step.threshold)
    if type(step) is Linear:
        prm[:5] = (
            step.overhead_s,
            step.prefill_tokens_per_s,
            step.decode_base_s,
            step.decode_per_seq_s,
            step.kv_token_s,
        )
        return _M_LINEAR, prm, 0
    return None


# ------------------------------------------------------------------ event heap


@njit
def _push(ht: np.ndarray, hk: np.ndarray, st: np.ndarray, t: float, kind: int, arg: int) -> None:
    """Schedule an event: a min-heap on (time, priority << 56 | creation order). Process starts
    are URGENT, everything else NORMAL, as in SimPy. (Callers pass `np.int64(_EV_...)`: a bare
    constant would make numba compile one specialisation per literal value.)"""
    prio = _NORMAL
    if kind == _EV_START or kind == _EV_START_ARRIVALS or kind == _EV_T_START:  # noqa: SIM109
        prio = _URGENT
    pos = st[_S_HSIZE]
    st[_S_HSIZE] = pos + 1
    key = (prio << _PRIO_SHIFT) | st[_S_EID]
    st[_S_EID] += 1
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
def _pop(ht: np.ndarray, hk: np.ndarray, st: np.ndarray) -> tuple[float, int, int]:
    """Remove the earliest event: (time, kind, argument)."""
    t0 = ht[0]
    kind0 = hk[1, 0]
    arg0 = hk[2, 0]
    size = st[_S_HSIZE] - 1
    st[_S_HSIZE] = size
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
def _change_kv(ii: np.ndarray, fi: np.ndarray, g: int, delta: int, now: float) -> None:
    fi[_J_KV_INTEGRAL, g] += ii[_I_KV, g] * (now - fi[_J_KV_SINCE, g])
    fi[_J_KV_SINCE, g] = now
    ii[_I_KV, g] += delta


@njit
def _notify(
    ii: np.ndarray, ht: np.ndarray, hk: np.ndarray, st: np.ndarray, g: int, now: float
) -> None:
    if ii[_I_SLEEP, g] == 1 and ii[_I_TRIG, g] == 0:
        ii[_I_TRIG, g] = 1
        _push(ht, hk, st, now, np.int64(_EV_WAKE), g)


@njit
def _link_after(ri: np.ndarray, ii: np.ndarray, g: int, r: int, which: int, prev: int) -> None:
    """Put r on list `which` of instance g right after `prev` (-1: at the head)."""
    base = _I_LISTS + 3 * which
    if prev >= 0:
        nxt = ri[prev, _R_NEXT]
        ri[prev, _R_NEXT] = r
    else:
        nxt = ii[base, g]
        ii[base, g] = r
    ri[r, _R_PREV] = prev
    ri[r, _R_NEXT] = nxt
    if nxt >= 0:
        ri[nxt, _R_PREV] = r
    else:
        ii[base + 1, g] = r
    ii[base + 2, g] += 1


@njit
def _unlink(ri: np.ndarray, ii: np.ndarray, g: int, r: int, which: int) -> None:
    base = _I_LISTS + 3 * which
    prev = ri[r, _R_PREV]
    nxt = ri[r, _R_NEXT]
    if prev >= 0:
        ri[prev, _R_NEXT] = nxt
    else:
        ii[base, g] = nxt
    if nxt >= 0:
        ri[nxt, _R_PREV] = prev
    else:
        ii[base + 1, g] = prev
    ii[base + 2, g] -= 1


@njit
def _append_running(ri: np.ndarray, ii: np.ndarray, g: int, r: int) -> None:
    """The reference's `running.append(r)`: newest of the running sequences."""
    ri[r, _R_ORD] = ii[_I_ORD, g]
    ii[_I_ORD, g] += 1
    which = 0 if ri[r, _R_LEFT] > 0 else 1
    _link_after(ri, ii, g, r, which, ii[_I_LISTS + 3 * which + 1, g])
    ii[_I_COUNT, g] += 1


@njit
def _to_decoding(ri: np.ndarray, ii: np.ndarray, g: int, r: int) -> None:
    """r's prefill ended: it moves to the decoding list, at its place in running order
    (usually at or near the tail)."""
    _unlink(ri, ii, g, r, np.int64(0))
    prev = ii[_I_DTAIL, g]
    order = ri[r, _R_ORD]
    while prev >= 0 and ri[prev, _R_ORD] > order:
        prev = ri[prev, _R_PREV]
    _link_after(ri, ii, g, r, np.int64(1), prev)


@njit
def _submit(
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
    free KV first (a stable sort: ties keep the lowest index first)."""
    rf[r, _F_QUEUED] = now
    size = qbuf.shape[1]
    if front:
        head = pi[_P_QHEAD, p] - 1
        if head < 0:
            head += size
        pi[_P_QHEAD, p] = head
        qbuf[p, head] = r
    else:
        pos = pi[_P_QHEAD, p] + pi[_P_QLEN, p]
        if pos >= size:
            pos -= size
        qbuf[p, pos] = r
    pi[_P_QLEN, p] += 1
    first = pi[_P_FIRST, p]
    m = 0
    for g in range(first, first + pi[_P_NINST, p]):
        if ii[_I_SLEEP, g] == 1 and ii[_I_TRIG, g] == 0:
            free = fi[_J_CAP, g] - ii[_I_KV, g]
            j = m
            while j > 0 and tmp_free[j - 1] < free:
                tmp_free[j] = tmp_free[j - 1]
                tmp_g[j] = tmp_g[j - 1]
                j -= 1
            tmp_free[j] = free
            tmp_g[j] = g
            m += 1
    for j in range(m):
        _notify(ii, ht, hk, st, tmp_g[j], now)


@njit
def _pop_queue(p: int, pi: np.ndarray, qbuf: np.ndarray) -> int:
    head = pi[_P_QHEAD, p]
    r = qbuf[p, head]
    head += 1
    if head == qbuf.shape[1]:
        head = 0
    pi[_P_QHEAD, p] = head
    pi[_P_QLEN, p] -= 1
    return r


@njit
def _fail(
    st: np.ndarray, ht: np.ndarray, hk: np.ndarray, r: int, need: int, p: int, now: float
) -> None:
    """A request does not fit an empty instance: the process dies; SimPy re-raises its error
    when the failure event (NORMAL, now) is processed."""
    if st[_S_ERROR] == 0:
        st[_S_ERROR] = 1
        st[_S_ERR_RID] = r
        st[_S_ERR_NEED] = need
        st[_S_ERR_POOL] = p
    _push(ht, hk, st, now, np.int64(_EV_FAIL), np.int64(0))


@njit
def _log_put(buf: np.ndarray, st: np.ndarray, slot: int, value: float) -> None:
    """Append to a step-log buffer; past its end only count (the caller reruns, larger)."""
    k = st[slot]
    if k < buf.shape[0]:
        buf[k] = value
    st[slot] = k + 1


@njit
def _log_step(
    log_i: np.ndarray, log_f: np.ndarray, st: np.ndarray, p: int, local: int, now: float,
    dt: float, kv_tokens: int, nchunks: int, ndec: int,
) -> None:  # fmt: skip
    _log_put(log_i, st, np.int64(_S_NLOG_I), p)
    _log_put(log_i, st, np.int64(_S_NLOG_I), local)
    _log_put(log_i, st, np.int64(_S_NLOG_I), kv_tokens)
    _log_put(log_i, st, np.int64(_S_NLOG_I), nchunks)
    _log_put(log_i, st, np.int64(_S_NLOG_I), ndec)
    _log_put(log_f, st, np.int64(_S_NLOG_F), now)
    _log_put(log_f, st, np.int64(_S_NLOG_F), dt)


@njit
def _instance_loop(
    g: int,
    now: float,
    ri: np.ndarray,
    rf: np.ndarray,
    ii: np.ndarray,
    fi: np.ndarray,
    pi: np.ndarray,
    pf: np.ndarray,
    qbuf: np.ndarray,
    wait: np.ndarray,
    busy: np.ndarray,
    acc: np.ndarray,
    ht: np.ndarray,
    hk: np.ndarray,
    st: np.ndarray,
    tmp_g: np.ndarray,
    tmp_free: np.ndarray,
    log_i: np.ndarray,
    log_f: np.ndarray,
    log_c: np.ndarray,
    log_d: np.ndarray,
) -> None:
    """A monolithic or decode instance from the top of its loop to its next wait: admit, then
    sleep or compose a step (preempting the newest while the decodes' growth does not fit)."""
    p = ii[_I_POOL, g]
    cap = fi[_J_CAP, g]
    mbs = pi[_P_MBS, p]
    budget = pi[_P_BUDGET, p]
    # One exit only (flags, no early return): numba then drops the reference-count updates of
    # the array arguments, which otherwise cost more than the step's own work.
    go = True
    while go:  # until a step is composed; again if preemption emptied the running list
        # admit: FCFS from the pool's queue while a sequence slot and its KV fit
        while pi[_P_QLEN, p] > 0:
            r = qbuf[p, pi[_P_QHEAD, p]]
            need = ri[r, _R_PROMPT] + ri[r, _R_GEN]
            seqs = ii[_I_COUNT, g] + ii[_I_IN_T, g] + 1
            if not (seqs <= mbs and ii[_I_KV, g] + need + seqs <= cap):
                if ii[_I_COUNT, g] == 0 and ii[_I_IN_T, g] == 0:
                    _fail(st, ht, hk, r, ri[r, _R_PROMPT] + ri[r, _R_OUTPUT], p, now)
                    go = False
                break
            _pop_queue(p, pi, qbuf)
            wait[p, r] += now - rf[r, _F_QUEUED]
            ri[r, _R_KV] = need
            _change_kv(ii, fi, g, need, now)
            if ri[r, _R_NEEDS_T] == 1:
                ii[_I_IN_T, g] += 1
                ri[r, _R_LINK] = g
                _push(ht, hk, st, now, np.int64(_EV_T_START), r)
            else:
                _append_running(ri, ii, g, r)
        if not go:
            break
        if ii[_I_COUNT, g] == 0:
            ii[_I_SLEEP, g] = 1
            ii[_I_TRIG, g] = 0
            go = False
            break
        # the step's decodes: none while unchunked prompts are waiting
        while ii[_I_KV, g] + (0 if (budget < 0 and ii[_I_NPRE, g] > 0) else ii[_I_NDEC, g]) > cap:
            if ii[_I_COUNT, g] == 1 and ii[_I_IN_T, g] == 0:
                r0 = ii[_I_PHEAD, g] if ii[_I_NPRE, g] > 0 else ii[_I_DHEAD, g]
                _fail(st, ht, hk, r0, ri[r0, _R_PROMPT] + ri[r0, _R_OUTPUT], p, now)
                go = False
                break
            # the newest running sequence: the later of the two lists' tails
            victim = ii[_I_PTAIL, g]
            last_decode = ii[_I_DTAIL, g]
            if victim < 0 or (last_decode >= 0 and ri[last_decode, _R_ORD] > ri[victim, _R_ORD]):
                victim = last_decode
            _unlink(ri, ii, g, victim, 0 if ri[victim, _R_LEFT] > 0 else 1)
            ii[_I_COUNT, g] -= 1
            _change_kv(ii, fi, g, -ri[victim, _R_KV], now)
            ri[victim, _R_KV] = 0
            context = ri[victim, _R_PROMPT] + ri[victim, _R_GEN]
            st[_S_PREEMPTIONS] += 1
            st[_S_RECOMPUTED] += context - ri[victim, _R_LEFT]
            ri[victim, _R_LEFT] = context
            ri[victim, _R_PDONE] = 0
            _submit(
                p, victim, np.int64(1), now, ri, rf, ii, fi, pi, qbuf, ht, hk, st, tmp_g, tmp_free
            )
        if ii[_I_COUNT, g] > 0:
            break
        # all preempted while transfers are in flight: back to admission, then wait for them
    if go:
        # compose: the first prompts (all of them unchunked, else up to the token budget), then
        # every decode unless unchunked prompts are waiting
        npre = ii[_I_NPRE, g]
        ndec = ii[_I_NDEC, g]
        room = budget - ndec
        p_tokens = 0
        p_sq = 0.0
        p_ctx = 0
        nchunks = 0
        r = ii[_I_PHEAD, g]
        while r >= 0:
            left = ri[r, _R_LEFT]
            if budget < 0:
                c = left
            else:
                if room <= 0:
                    break
                c = min(left, room)
                room -= c
            ri[r, _R_CHUNK] = c
            done_tok = ri[r, _R_PDONE]
            p_tokens += c
            p_sq += c * c + 2.0 * c * done_tok
            p_ctx += done_tok
            nchunks += 1
            r = ri[r, _R_NEXT]
        nd = 0
        k_ctx = 0
        if not (budget < 0 and npre > 0):
            nd = ndec
            r = ii[_I_DHEAD, g]
            while r >= 0:
                k_ctx += ri[r, _R_KV]
                r = ri[r, _R_NEXT]
        dt = _step_s(pi[_P_MODEL, p], pf, p, pi[_P_THRESHOLD, p], p_tokens, p_sq, p_ctx, nd, k_ctx)
        nb = nchunks + nd
        if st[_S_LOG] == 1:
            _log_step(
                log_i,
                log_f,
                st,
                p,
                ii[_I_LOCAL, g],
                now,
                dt,
                ii[_I_KV, g] + nd,
                nchunks,
                nd,
            )
            r = ii[_I_PHEAD, g]
            for _ in range(nchunks):
                _log_put(log_c, st, np.int64(_S_NLOG_C), r)
                _log_put(log_c, st, np.int64(_S_NLOG_C), ri[r, _R_CHUNK])
                r = ri[r, _R_NEXT]
            r = ii[_I_DHEAD, g]
            for _ in range(nd):
                _log_put(log_d, st, np.int64(_S_NLOG_D), r)
                r = ri[r, _R_NEXT]
        acc[0, p] += dt
        acc[1, p] += nb * dt
        fi[_J_SHARE, g] = dt * pi[_P_TP, p] / nb  # added to each sequence's busy time at the end
        ii[_I_SNAP, g] = nchunks
        ii[_I_SNAP_DEC, g] = nd
        _push(ht, hk, st, now + dt, np.int64(_EV_STEP), g)


@njit
def _instance_step_done(
    g: int, now: float, ri: np.ndarray, rf: np.ndarray, ii: np.ndarray, fi: np.ndarray,
    busy: np.ndarray,
) -> None:  # fmt: skip
    """The end of a monolithic or decode step: decodes grow by one token and the finished leave,
    chunks advance and finished prompts start decoding. The step's sequences are the first
    `_I_SNAP_DEC` of the decoding list (transfers arriving meanwhile only append) and the first
    `_I_SNAP` of the prefilling list (unchanged meanwhile). Decodes before chunks, so that the
    decoding list's prefix is intact; the two touch different sequences and KV changes at one
    instant do not change the KV integral, so the order is immaterial to the results."""
    p = ii[_I_POOL, g]
    share = fi[_J_SHARE, g]
    nd = ii[_I_SNAP_DEC, g]
    if nd > 0:
        _change_kv(ii, fi, g, nd, now)
        r = ii[_I_DHEAD, g]
        for _ in range(nd):
            nxt = ri[r, _R_NEXT]
            busy[p, r] += share
            ri[r, _R_GEN] += 1
            ri[r, _R_KV] += 1
            if math.isnan(rf[r, _F_FIRST]):
                rf[r, _F_FIRST] = now
            if ri[r, _R_GEN] == ri[r, _R_OUTPUT]:
                rf[r, _F_DONE] = now
                _change_kv(ii, fi, g, -ri[r, _R_KV], now)
                _unlink(ri, ii, g, r, np.int64(1))
                ii[_I_COUNT, g] -= 1
            r = nxt
    r = ii[_I_PHEAD, g]
    for _ in range(ii[_I_SNAP, g]):
        nxt = ri[r, _R_NEXT]
        busy[p, r] += share
        c = ri[r, _R_CHUNK]
        ri[r, _R_CHUNK] = 0
        ri[r, _R_LEFT] -= c
        ri[r, _R_PDONE] += c
        if ri[r, _R_LEFT] == 0:
            ri[r, _R_PDONE] = 0
            if ii[_I_FIRST_AT_PREFILL, g] == 1 and math.isnan(rf[r, _F_FIRST]):
                rf[r, _F_FIRST] = now
            _to_decoding(ri, ii, g, r)
        r = nxt


@njit
def _prefill_loop(
    g: int,
    now: float,
    ri: np.ndarray,
    rf: np.ndarray,
    ii: np.ndarray,
    fi: np.ndarray,
    pi: np.ndarray,
    pf: np.ndarray,
    qbuf: np.ndarray,
    wait: np.ndarray,
    busy: np.ndarray,
    acc: np.ndarray,
    ht: np.ndarray,
    hk: np.ndarray,
    st: np.ndarray,
    log_i: np.ndarray,
    log_f: np.ndarray,
    log_c: np.ndarray,
    log_d: np.ndarray,
) -> None:
    """A prefill instance from the top of its loop to its next wait: take whole prompts FCFS
    within the token budget, batch size and KV, then sleep or start the step."""
    zero = np.int64(0)  # not a literal (see _push)
    p = ii[_I_POOL, g]
    cap = fi[_J_CAP, g]
    mbs = pi[_P_MBS, p]
    budget = pi[_P_BUDGET, p]  # <= 0: unlimited (`token_budget or math.inf`)
    tokens = 0
    sq = 0
    count = 0
    tail = -1
    failed = False  # one exit only (see _instance_loop)
    while pi[_P_QLEN, p] > 0 and count < mbs:
        r = qbuf[p, pi[_P_QHEAD, p]]
        prompt = ri[r, _R_PROMPT]
        if count > 0 and budget > 0 and tokens + prompt > budget:
            break
        if ii[_I_KV, g] + prompt > cap:
            if count == 0 and ii[_I_KV, g] == 0:
                _fail(st, ht, hk, r, prompt, p, now)
                failed = True
            break
        _pop_queue(p, pi, qbuf)
        wait[p, r] += now - rf[r, _F_QUEUED]
        _change_kv(ii, fi, g, prompt, now)
        ri[r, _R_BNEXT] = -1
        if tail >= 0:
            ri[tail, _R_BNEXT] = r
        else:
            ii[_I_BHEAD, g] = r
        tail = r
        count += 1
        tokens += prompt
        sq += prompt * prompt
    if failed:
        pass
    elif count == 0:
        ii[_I_SLEEP, g] = 1
        ii[_I_TRIG, g] = 0
    else:
        ii[_I_BCOUNT, g] = count
        dt = _step_s(
            pi[_P_MODEL, p], pf, p, pi[_P_THRESHOLD, p], tokens, float(sq), zero, zero, zero
        )
        if st[_S_LOG] == 1:
            _log_step(log_i, log_f, st, p, ii[_I_LOCAL, g], now, dt, ii[_I_KV, g], count, zero)
            r = ii[_I_BHEAD, g]
            for _ in range(count):
                _log_put(log_c, st, np.int64(_S_NLOG_C), r)
                _log_put(log_c, st, np.int64(_S_NLOG_C), ri[r, _R_PROMPT])
                r = ri[r, _R_BNEXT]
        acc[0, p] += dt
        acc[1, p] += count * dt
        share = dt * pi[_P_TP, p] / count
        r = ii[_I_BHEAD, g]
        for _ in range(count):
            busy[p, r] += share
            r = ri[r, _R_BNEXT]
        _push(ht, hk, st, now + dt, np.int64(_EV_STEP), g)


@njit
def _trigger_put(
    link: int,
    now: float,
    ri: np.ndarray,
    ii: np.ndarray,
    ht: np.ndarray,
    hk: np.ndarray,
    st: np.ndarray,
) -> None:
    """SimPy's Resource._trigger_put for a link of capacity 1: grant the queue's head if free."""
    head = ii[_I_LQHEAD, link]
    if head >= 0 and ii[_I_USERS, link] == 0:
        nxt = ri[head, _R_TNEXT]
        ii[_I_LQHEAD, link] = nxt
        if nxt < 0:
            ii[_I_LQTAIL, link] = -1
        ii[_I_USERS, link] = 1
        _push(ht, hk, st, now, np.int64(_EV_T_GRANT), head)


@njit
def _transfer_done(
    r: int,
    now: float,
    ri: np.ndarray,
    rf: np.ndarray,
    ii: np.ndarray,
    fi: np.ndarray,
    ht: np.ndarray,
    hk: np.ndarray,
    st: np.ndarray,
    tr_i: np.ndarray,
    tr_f: np.ndarray,
) -> None:
    """A transfer's end: release the link, log it, free the prompt's KV on the prefill
    instance, and the sequence joins the decode instance's running list."""
    link = ri[r, _R_LINK]
    ii[_I_USERS, link] = 0
    _push(ht, hk, st, now, np.int64(_EV_RELEASE), link)
    k = st[_S_NTRANSFERS]
    st[_S_NTRANSFERS] = k + 1
    tr_i[0, k] = r
    tr_i[1, k] = ii[_I_LOCAL, link]
    tr_f[0, k] = rf[r, _F_TSTART]
    tr_f[1, k] = now
    src = ri[r, _R_SOURCE]
    _change_kv(ii, fi, src, -ri[r, _R_PROMPT], now)
    _notify(ii, ht, hk, st, src, now)
    ri[r, _R_SOURCE] = -1
    ri[r, _R_NEEDS_T] = 0
    ii[_I_IN_T, link] -= 1
    _append_running(ri, ii, link, r)
    _notify(ii, ht, hk, st, link, now)


@njit
def _kernel(
    arrival: np.ndarray,
    prompt: np.ndarray,
    output: np.ndarray,
    pool_in: np.ndarray,
    pf: np.ndarray,
    pool_cap: np.ndarray,
    decode_pool: int,
    first_token_prefill: bool,
    kv_bytes_per_token: float,
    link_bytes_per_s: float,
    log: bool,
    log_i: np.ndarray,
    log_f: np.ndarray,
    log_c: np.ndarray,
    log_d: np.ndarray,
):  # noqa: ANN202
    """Run the whole simulation; see the module docstring for the correspondence to SimPy.
    With `log`, every step is recorded in the log buffers (st counts the entries; if a buffer
    was too small the caller runs again with larger ones)."""
    zero = np.int64(0)  # not a literal: one numba specialisation of the helpers, not several
    n = arrival.shape[0]
    npools = pool_in.shape[1]
    # (initialised by loops: numba compiles row-slice assignments slowly)
    pi = np.zeros((_NPI, npools), np.int64)
    ninst = 0
    for p in range(npools):
        for k in range(_P_IN):
            pi[k, p] = pool_in[k, p]
        ninst += pool_in[_P_NINST, p]

    ri = np.empty((n, _NRI), np.int64)
    rf = np.empty((n, _NRF))
    for r in range(n):
        ri[r, _R_PROMPT] = prompt[r]
        ri[r, _R_OUTPUT] = output[r]
        ri[r, _R_GEN] = 0
        ri[r, _R_LEFT] = prompt[r]
        ri[r, _R_PDONE] = 0
        ri[r, _R_KV] = 0
        ri[r, _R_NEEDS_T] = 0
        ri[r, _R_SOURCE] = -1
        ri[r, _R_NEXT] = -1
        ri[r, _R_PREV] = -1
        ri[r, _R_CHUNK] = 0
        ri[r, _R_ORD] = 0
        ri[r, _R_TNEXT] = -1
        ri[r, _R_LINK] = -1
        ri[r, _R_BNEXT] = -1
        rf[r, _F_QUEUED] = 0.0
        rf[r, _F_TSTART] = 0.0
        rf[r, _F_FIRST] = np.nan
        rf[r, _F_DONE] = np.nan
    wait = np.zeros((npools, n))
    busy = np.zeros((npools, n))
    acc = np.zeros((2, npools))  # step time, batch size x step time

    ii = np.zeros((_NII, ninst), np.int64)
    fi = np.zeros((_NFI, ninst))
    for p in range(npools):
        prefill_pool = decode_pool >= 0 and p != decode_pool
        for j in range(pool_in[_P_NINST, p]):
            g = pool_in[_P_FIRST, p] + j
            ii[_I_POOL, g] = p
            ii[_I_LOCAL, g] = j
            ii[_I_KIND, g] = 1 if prefill_pool else 0
            # monolithic: first token at the prefill; decode pool: never; prefill pool: per spec
            fap = first_token_prefill if prefill_pool else decode_pool < 0
            ii[_I_FIRST_AT_PREFILL, g] = 1 if fap else 0
            ii[_I_PHEAD, g] = -1
            ii[_I_PTAIL, g] = -1
            ii[_I_DHEAD, g] = -1
            ii[_I_DTAIL, g] = -1
            ii[_I_LQHEAD, g] = -1
            ii[_I_LQTAIL, g] = -1
            ii[_I_BHEAD, g] = -1
            ii[_I_BTAIL, g] = -1
            fi[_J_CAP, g] = pool_cap[p]

    qbuf = np.empty((npools, max(n, 1)), np.int64)
    # pending events: one per instance, the arrival process, one failure per instance, and
    # per request at most one transfer event and one link release
    hcap = 2 * n + 2 * ninst + 16
    ht = np.empty(hcap)
    hk = np.empty((3, hcap), np.int64)
    st = np.zeros(_NST, np.int64)
    st[_S_LOG] = 1 if log else 0
    tmp_g = np.empty(max(ninst, 1), np.int64)
    tmp_free = np.empty(max(ninst, 1))
    tr_i = np.empty((2, n), np.int64)
    tr_f = np.empty((2, n))

    # The event loop works on unmanaged views of these arrays (see `_unmanaged`); `owners`
    # keeps the arrays themselves alive until after the loop.
    owners = (
        ri,
        rf,
        ii,
        fi,
        pi,
        pf,
        qbuf,
        wait,
        busy,
        acc,
        ht,
        hk,
        st,
        tmp_g,
        tmp_free,
        tr_i,
        tr_f,
    )
    out = (wait, busy, acc, st)
    ri = _unmanaged(ri)
    rf = _unmanaged(rf)
    ii = _unmanaged(ii)
    fi = _unmanaged(fi)
    pi = _unmanaged(pi)
    pf = _unmanaged(pf)
    qbuf = _unmanaged(qbuf)
    wait = _unmanaged(wait)
    busy = _unmanaged(busy)
    acc = _unmanaged(acc)
    ht = _unmanaged(ht)
    hk = _unmanaged(hk)
    st = _unmanaged(st)
    tmp_g = _unmanaged(tmp_g)
    tmp_free = _unmanaged(tmp_free)
    tr_i = _unmanaged(tr_i)
    tr_f = _unmanaged(tr_f)
    log_i = _unmanaged(log_i)
    log_f = _unmanaged(log_f)
    log_c = _unmanaged(log_c)
    log_d = _unmanaged(log_d)

    # The reference starts the instance processes (in pool order: prefill before decode), then
    # the arrival process; all at time 0, URGENT.
    for g in range(ninst):
        _push(ht, hk, st, 0.0, np.int64(_EV_START), g)
    _push(ht, hk, st, 0.0, np.int64(_EV_START_ARRIVALS), np.int64(0))
    while st[_S_HSIZE] > 0:
        now, kind, arg = _pop(ht, hk, st)
        if kind == _EV_STEP or kind == _EV_WAKE or kind == _EV_START:  # noqa: SIM109 (numba)
            g = arg
            if kind == _EV_WAKE:
                ii[_I_SLEEP, g] = 0
                ii[_I_TRIG, g] = 0
            if ii[_I_KIND, g] == 0:
                if kind == _EV_STEP:
                    _instance_step_done(g, now, ri, rf, ii, fi, busy)
                _instance_loop(
                    g,
                    now,
                    ri,
                    rf,
                    ii,
                    fi,
                    pi,
                    pf,
                    qbuf,
                    wait,
                    busy,
                    acc,
                    ht,
                    hk,
                    st,
                    tmp_g,
                    tmp_free,
                    log_i,
                    log_f,
                    log_c,
                    log_d,
                )
            else:
                if kind == _EV_STEP:
                    r = ii[_I_BHEAD, g]
                    count = ii[_I_BCOUNT, g]
                    ii[_I_BHEAD, g] = -1
                    ii[_I_BCOUNT, g] = 0
                    for _ in range(count):
                        nxt = ri[r, _R_BNEXT]
                        if ii[_I_FIRST_AT_PREFILL, g] == 1:
                            rf[r, _F_FIRST] = now
                        ri[r, _R_LEFT] = 0
                        ri[r, _R_NEEDS_T] = 1
                        ri[r, _R_SOURCE] = g
                        _submit(
                            decode_pool,
                            r,
                            zero,
                            now,
                            ri,
                            rf,
                            ii,
                            fi,
                            pi,
                            qbuf,
                            ht,
                            hk,
                            st,
                            tmp_g,
                            tmp_free,
                        )
                        r = nxt
                _prefill_loop(
                    g,
                    now,
                    ri,
                    rf,
                    ii,
                    fi,
                    pi,
                    pf,
                    qbuf,
                    wait,
                    busy,
                    acc,
                    ht,
                    hk,
                    st,
                    log_i,
                    log_f,
                    log_c,
                    log_d,
                )
        elif kind == _EV_ARRIVAL or kind == _EV_START_ARRIVALS:  # noqa: SIM109
            i = st[_S_NEXT_ARRIVAL]
            if kind == _EV_ARRIVAL:
                _submit(zero, i, zero, now, ri, rf, ii, fi, pi, qbuf, ht, hk, st, tmp_g, tmp_free)
                i += 1
            while i < n:
                t = arrival[i]
                if t > now:
                    _push(ht, hk, st, now + (t - now), np.int64(_EV_ARRIVAL), np.int64(0))
                    break
                _submit(zero, i, zero, now, ri, rf, ii, fi, pi, qbuf, ht, hk, st, tmp_g, tmp_free)
                i += 1
            st[_S_NEXT_ARRIVAL] = i
        elif kind == _EV_T_START:
            r = arg
            link = ri[r, _R_LINK]
            ri[r, _R_TNEXT] = -1
            tail = ii[_I_LQTAIL, link]
            if tail >= 0:
                ri[tail, _R_TNEXT] = r
            else:
                ii[_I_LQHEAD, link] = r
            ii[_I_LQTAIL, link] = r
            _trigger_put(link, now, ri, ii, ht, hk, st)
        elif kind == _EV_T_GRANT:
            r = arg
            rf[r, _F_TSTART] = now
            dt = ri[r, _R_PROMPT] * kv_bytes_per_token / link_bytes_per_s
            if dt > 0:
                _push(ht, hk, st, now + dt, np.int64(_EV_T_DONE), r)
            else:
                _transfer_done(r, now, ri, rf, ii, fi, ht, hk, st, tr_i, tr_f)
        elif kind == _EV_T_DONE:
            _transfer_done(arg, now, ri, rf, ii, fi, ht, hk, st, tr_i, tr_f)
        elif kind == _EV_RELEASE:
            _trigger_put(arg, now, ri, ii, ht, hk, st)
        else:  # _EV_FAIL
            break

    nt = st[_S_NTRANSFERS]
    kv_state = np.empty((3, ninst))
    for g in range(ninst):
        kv_state[0, g] = fi[_J_KV_INTEGRAL, g]
        kv_state[1, g] = ii[_I_KV, g]
        kv_state[2, g] = fi[_J_KV_SINCE, g]
    first = rf[:, _F_FIRST].copy()
    done = rf[:, _F_DONE].copy()
    transfers_i = tr_i[:, :nt].copy()
    transfers_f = tr_f[:, :nt].copy()
    assert len(owners) > 0  # the views above were used while this held their arrays
    return first, done, out[0], out[1], out[2], out[3], transfers_i, transfers_f, kv_state


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
    ints = li.reshape(-1, _LOG_INTS).tolist()
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


def run(requests: Requests, plan: ServingConfig, checker: Checker | None = None) -> Timeline:
    """Simulate one architecture's batched instances until every request has finished: the
    same Timeline as `batched_simpy.run`, bit for bit. Falls back to the reference for a step-time
    model it cannot compile."""
    names = list(plan.pools)
    disaggregated = "gpu" not in plan.pools
    # Process order of the reference: the entry pool's instances first (gpu, or prefill), then
    # the decode pool's; pool 0 is where arrivals go.
    order = ["prefill", "decode"] if disaggregated else ["gpu"]
    if sorted(order) != sorted(names):
        return batched_simpy.run(requests, plan, checker)  # pragma: no cover - unknown layout
    names = order
    npools = len(names)
    pool_in = np.zeros((_P_IN, npools), np.int64)
    pf = np.zeros((npools, _NPARAM))
    pool_cap = np.zeros(npools)
    first = 0
    for p, name in enumerate(names):
        pool = plan.pools[name]
        params = _step_params(pool.step)
        if params is None:
            return batched_simpy.run(requests, plan, checker)
        code, prm, threshold = params
        pf[p] = prm
        pool_in[:, p] = (
            pool.instances,
            first,
            pool.max_batch_size,
            -1 if pool.token_budget is None else pool.token_budget,
            pool.tensor_parallel,
            code,
            threshold,
        )
        pool_cap[p] = pool.kv_capacity_tokens
        first += pool.instances
    link_bytes_per_s = (plan.kv_link_gb_s or 1.0) * GB
    arrays = (
        np.ascontiguousarray(requests.arrival_s, dtype=np.float64),
        np.ascontiguousarray(requests.prompt_tokens, dtype=np.int64),
        np.ascontiguousarray(requests.output_tokens, dtype=np.int64),
    )
    scalars = (
        1 if disaggregated else -1,
        plan.first_token == "prefill",
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
        first_s, done_s, wait, busy, acc, st, tr_i, tr_f, kv_state = _kernel(
            *arrays, pool_in, pf, pool_cap, *scalars, checker is not None, *logs
        )
        used = tuple(int(st[k]) for k in (_S_NLOG_I, _S_NLOG_F, _S_NLOG_C, _S_NLOG_D))
        if all(u <= w for u, w in zip(used, wanted, strict=True)):
            break
        wanted = used  # the run is deterministic: the same again, with room for every entry
    if checker is not None:
        li, lf, lc, ld = (log[:u] for log, u in zip(logs, used, strict=True))
        for record in _records(plan, names, li, lf, lc, ld):
            checker(record)
    if st[_S_ERROR]:
        rid, need = int(st[_S_ERR_RID]), int(st[_S_ERR_NEED])
        pool = plan.pools[names[int(st[_S_ERR_POOL])]]
        raise SimulationError(
            f"request {rid} needs {need} KV tokens ({int(requests.prompt_tokens[rid])} prompt + "
            f"{int(requests.output_tokens[rid])} output) but an instance of the {pool.name} "
            f"pool holds {pool.kv_capacity_tokens:.0f}; cap the token distributions with `max`"
        )
    return _trace(requests, plan, names, first_s, done_s, wait, busy, acc, st, tr_i, tr_f, kv_state)


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
        preemptions=int(st[_S_PREEMPTIONS]),
        recomputed_tokens=int(st[_S_RECOMPUTED]),
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
    pool_in = np.zeros((_P_IN, 1), np.int64)
    pool_in[:, 0] = (1, 0, 1, -1, 1, _M_LINEAR, 0)
    pf = np.zeros((1, _NPARAM))
    pf[0, :2] = (0.0, 1.0)
    one = np.ones(1, np.int64)
    logs = (np.empty(8, np.int64), np.empty(8), np.empty(8, np.int64), np.empty(8, np.int64))
    _kernel(np.zeros(1), one, one, pool_in, pf, np.full(1, np.inf), -1, True, 0.0, GB, True, *logs)
