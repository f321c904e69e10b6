"""The compiled batched engine's event loop: the SimPy reference's processes as state machines.

Each process of the reference (`distsim.sim.batched_simpy`) becomes a numba function run from
one of its wake-ups to its next wait, on the state arrays of `distsim.sim.batched_layout`:

- `instance_loop`: a monolithic or decode instance admits, makes room (`preempt_newest`), and
  starts a step or sleeps; `instance_step_done` settles a step's decodes and prompt chunks;
- `prefill_loop` / `prefill_step_done`: a prefill instance takes whole prompts and hands them to
  the decode pool;
- `arrivals`: the arrival process; `link_request`, `transfer_start`, `transfer_done`: one KV
  transfer and the link it holds;
- `kernel`: sets up the state, runs `event_loop` (pop the earliest event, dispatch it) and
  returns the per-request and per-pool results.
`distsim.sim.fast_batched` explains why the replay is exact and calls `kernel`.
"""

from __future__ import annotations

import math

import numpy as np

from distsim.sim.batched_layout import (
    EV_ARRIVAL,
    EV_RELEASE,
    EV_START,
    EV_START_ARRIVALS,
    EV_STEP,
    EV_T_DONE,
    EV_T_GRANT,
    EV_T_START,
    EV_WAKE,
    F_DONE,
    F_FIRST,
    F_QUEUED,
    F_TSTART,
    I_BCOUNT,
    I_BHEAD,
    I_BLOCK,
    I_BTAIL,
    I_COUNT,
    I_DHEAD,
    I_DTAIL,
    I_FIRST_AT_PREFILL,
    I_IN_T,
    I_KIND,
    I_KV,
    I_LOCAL,
    I_LQHEAD,
    I_LQTAIL,
    I_NDEC,
    I_NPRE,
    I_PHEAD,
    I_POOL,
    I_PTAIL,
    I_QHEAD,
    I_QLEN,
    I_QTAIL,
    I_ROUTING,
    I_SLEEP,
    I_SNAP,
    I_SNAP_DEC,
    I_TRIG,
    I_USERS,
    J_CAP,
    J_KV_INTEGRAL,
    J_KV_SINCE,
    J_SHARE,
    NFI,
    NII,
    NPI,
    NRF,
    NRI,
    NST,
    P_BLOCK,
    P_BUDGET,
    P_FIRST,
    P_IN,
    P_MBS,
    P_MODEL,
    P_NINST,
    P_PREFILL_CAP,
    P_QHEAD,
    P_QLEN,
    P_RESERVE,
    P_ROUTING,
    P_THRESHOLD,
    P_TP,
    R_BNEXT,
    R_CHUNK,
    R_GEN,
    R_KV,
    R_LEFT,
    R_LINK,
    R_NEEDS_T,
    R_NEXT,
    R_ORD,
    R_OUTPUT,
    R_PDONE,
    R_PREV,
    R_PROMPT,
    R_QNEXT,
    R_SOURCE,
    R_TNEXT,
    RT_RANDOM,
    S_EMIT_AT_PREFILL,
    S_HSIZE,
    S_LOG,
    S_NEXT_ARRIVAL,
    S_NLOG_C,
    S_NLOG_D,
    S_NTRANSFERS,
)
from distsim.sim.batched_primitives import (
    append_running,
    change_kv,
    fail,
    held,
    leave,
    log_put,
    log_step,
    notify,
    own_queue_pop,
    pop,
    pop_queue,
    preempt_newest,
    push,
    queue_head,
    queue_length,
    queue_pop,
    step_s,
    submit,
    to_decoding,
    unlink,
    unmanaged,
)
from distsim.sim.jit import njit, njit_inline

# ------------------------------------------------------------------ monolithic and decode instances


@njit_inline
def growth(ri: np.ndarray, ii: np.ndarray, g: int, nd: int) -> int:
    """KV a decode iteration of the first `nd` decoding sequences adds: a block for each whose
    last block is full (`nd` tokens with 1-token blocks)."""
    b = ii[I_BLOCK, g]
    if b == 1:
        return nd
    out = 0
    r = ii[I_DHEAD, g]
    for _ in range(nd):
        if ri[r, R_KV] % b == 0:
            out += b
        r = ri[r, R_NEXT]
    return out


@njit
def instance_loop(
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
    """A monolithic or decode instance from the top of its loop to its next wait, in three
    phases: admit from the pool's queue; sleep if nothing runs, else preempt the newest while
    the decodes' growth does not fit; compose and price the step and schedule its end.

    The phases stay in one function on purpose: as separate numba functions (even inlined by
    numba) the whole engine ran markedly slower (benchmarks/bench_batched.py), while the rarely
    taken preemption is split out at no cost."""
    p = ii[I_POOL, g]
    cap = fi[J_CAP, g]
    mbs = pi[P_MBS, p]
    budget = pi[P_BUDGET, p]
    # One exit only (flags, no early return): numba then drops the reference-count updates of
    # the array arguments, which otherwise cost more than the step's own work.
    go = True
    routed = ii[I_ROUTING, g] != 0  # its own queue, else the pool's (written out: hot loop)
    while go:  # until a step is composed; again if preemption emptied the running list
        # admit: FCFS from the queue while a sequence slot and its KV fit
        while (ii[I_QLEN, g] if routed else pi[P_QLEN, p]) > 0:
            r = ii[I_QHEAD, g] if routed else qbuf[p, pi[P_QHEAD, p]]
            need = ri[r, R_PROMPT] + ri[r, R_GEN]
            if ri[r, R_NEEDS_T] == 1 and st[S_EMIT_AT_PREFILL] == 1:
                need -= 1  # the last token's KV is written by the next decode iteration
            seqs = ii[I_COUNT, g] + ii[I_IN_T, g] + 1
            kept = seqs + pi[P_RESERVE, p]  # a token of headroom a sequence, and the watermark
            if not (seqs <= mbs and ii[I_KV, g] + held(need, ii[I_BLOCK, g]) + kept <= cap):
                if ii[I_COUNT, g] == 0 and ii[I_IN_T, g] == 0:
                    fail(st, ht, hk, r, ri[r, R_PROMPT] + ri[r, R_OUTPUT], p, now)
                    go = False
                break
            if routed:
                own_queue_pop(ri, ii, g)
            else:
                pop_queue(p, pi, qbuf)
            wait[p, r] += now - rf[r, F_QUEUED]
            ri[r, R_KV] = need
            change_kv(ii, fi, g, held(need, ii[I_BLOCK, g]), now)
            if ri[r, R_NEEDS_T] == 1:
                ii[I_IN_T, g] += 1
                ri[r, R_LINK] = g
                push(ht, hk, st, now, np.int64(EV_T_START), r)
            else:
                append_running(ri, ii, g, r)
        if not go:
            break
        if ii[I_COUNT, g] == 0:
            ii[I_SLEEP, g] = 1
            ii[I_TRIG, g] = 0
            go = False
            break
        # the step's decodes: none while unchunked prompts are waiting
        while (
            ii[I_KV, g]
            + (0 if (budget < 0 and ii[I_NPRE, g] > 0) else growth(ri, ii, g, ii[I_NDEC, g]))
            > cap
        ):
            if ii[I_COUNT, g] == 1 and ii[I_IN_T, g] == 0:
                r0 = ii[I_PHEAD, g] if ii[I_NPRE, g] > 0 else ii[I_DHEAD, g]
                fail(st, ht, hk, r0, ri[r0, R_PROMPT] + ri[r0, R_OUTPUT], p, now)
                go = False
                break
            preempt_newest(g, now, ri, rf, ii, fi, pi, qbuf, ht, hk, st, tmp_g, tmp_free)
        if ii[I_COUNT, g] > 0:
            break
        # all preempted while transfers are in flight: back to admission, then wait for them
    if go:
        # compose: the first prompts (all of them unchunked, else up to the token budget), then
        # every decode unless unchunked prompts are waiting
        npre = ii[I_NPRE, g]
        ndec = ii[I_NDEC, g]
        room = budget - ndec
        cap_tokens = pi[P_PREFILL_CAP, p]
        p_tokens = 0
        p_sq = 0.0
        p_ctx = 0
        nchunks = 0
        r = ii[I_PHEAD, g]
        while r >= 0:
            left = ri[r, R_LEFT]
            if budget < 0:
                if cap_tokens >= 0 and nchunks > 0 and p_tokens + left > cap_tokens:
                    break  # unchunked prefill step: FCFS while the cap holds
                c = left
            else:
                if room <= 0:
                    break
                c = min(left, room)
                room -= c
            ri[r, R_CHUNK] = c
            done_tok = ri[r, R_PDONE]
            p_tokens += c
            p_sq += c * c + 2.0 * c * done_tok
            p_ctx += done_tok
            nchunks += 1
            r = ri[r, R_NEXT]
        nd = 0
        k_ctx = 0
        if not (budget < 0 and npre > 0):
            nd = ndec
            r = ii[I_DHEAD, g]
            while r >= 0:
                k_ctx += ri[r, R_KV]
                r = ri[r, R_NEXT]
        dt = step_s(pi[P_MODEL, p], pf, p, pi[P_THRESHOLD, p], p_tokens, p_sq, p_ctx, nd, k_ctx)
        nb = nchunks + nd
        if st[S_LOG] == 1:
            log_step(
                log_i,
                log_f,
                st,
                p,
                ii[I_LOCAL, g],
                now,
                dt,
                ii[I_KV, g] + growth(ri, ii, g, nd),
                nchunks,
                nd,
            )
            r = ii[I_PHEAD, g]
            for _ in range(nchunks):
                log_put(log_c, st, np.int64(S_NLOG_C), r)
                log_put(log_c, st, np.int64(S_NLOG_C), ri[r, R_CHUNK])
                r = ri[r, R_NEXT]
            r = ii[I_DHEAD, g]
            for _ in range(nd):
                log_put(log_d, st, np.int64(S_NLOG_D), r)
                r = ri[r, R_NEXT]
        acc[0, p] += dt
        acc[1, p] += nb * dt
        fi[J_SHARE, g] = dt * pi[P_TP, p] / nb  # added to each sequence's busy time at the end
        ii[I_SNAP, g] = nchunks
        ii[I_SNAP_DEC, g] = nd
        push(ht, hk, st, now + dt, np.int64(EV_STEP), g)


@njit
def instance_step_done(
    g: int, now: float, ri: np.ndarray, rf: np.ndarray, ii: np.ndarray, fi: np.ndarray,
    busy: np.ndarray, st: np.ndarray,
) -> None:  # fmt: skip
    """The end of a monolithic or decode step: decodes grow by one token and the finished leave,
    chunks advance and finished prompts start decoding. The step's sequences are the first
    `I_SNAP_DEC` of the decoding list (transfers arriving meanwhile only append) and the first
    `I_SNAP` of the prefilling list (unchanged meanwhile). Decodes before chunks, so that the
    decoding list's prefix is intact; the two touch different sequences and KV changes at one
    instant do not change the KV integral, so the order is immaterial to the results."""
    p = ii[I_POOL, g]
    share = fi[J_SHARE, g]
    nd = ii[I_SNAP_DEC, g]
    if nd > 0:
        change_kv(ii, fi, g, growth(ri, ii, g, nd), now)
        r = ii[I_DHEAD, g]
        for _ in range(nd):
            nxt = ri[r, R_NEXT]
            busy[p, r] += share
            ri[r, R_GEN] += 1
            ri[r, R_KV] += 1
            if math.isnan(rf[r, F_FIRST]):
                rf[r, F_FIRST] = now
            if ri[r, R_GEN] == ri[r, R_OUTPUT]:
                rf[r, F_DONE] = now
                change_kv(ii, fi, g, -held(ri[r, R_KV], ii[I_BLOCK, g]), now)
                leave(ri, ii, g, r)
                unlink(ri, ii, g, r, np.int64(1))
                ii[I_COUNT, g] -= 1
            r = nxt
    r = ii[I_PHEAD, g]
    for _ in range(ii[I_SNAP, g]):
        nxt = ri[r, R_NEXT]
        busy[p, r] += share
        c = ri[r, R_CHUNK]
        ri[r, R_CHUNK] = 0
        ri[r, R_LEFT] -= c
        ri[r, R_PDONE] += c
        if ri[r, R_LEFT] == 0:
            ri[r, R_PDONE] = 0
            if ii[I_FIRST_AT_PREFILL, g] == 1 and math.isnan(rf[r, F_FIRST]):
                rf[r, F_FIRST] = now
            if st[S_EMIT_AT_PREFILL] == 1:
                ri[r, R_GEN] += 1
            if ri[r, R_GEN] == ri[r, R_OUTPUT]:  # its only token came from the prefill
                rf[r, F_DONE] = now
                change_kv(ii, fi, g, -held(ri[r, R_KV], ii[I_BLOCK, g]), now)
                leave(ri, ii, g, r)
                unlink(ri, ii, g, r, np.int64(0))
                ii[I_COUNT, g] -= 1
            else:
                to_decoding(ri, ii, g, r)
        r = nxt


# ------------------------------------------------------------------ prefill instances


@njit
def prefill_loop(
    g: int, now: float, ri: np.ndarray, rf: np.ndarray, ii: np.ndarray, fi: np.ndarray,
    pi: np.ndarray, pf: np.ndarray, qbuf: np.ndarray, wait: np.ndarray, busy: np.ndarray,
    acc: np.ndarray, ht: np.ndarray, hk: np.ndarray, st: np.ndarray, log_i: np.ndarray,
    log_f: np.ndarray, log_c: np.ndarray, log_d: np.ndarray,
) -> None:  # fmt: skip
    """A prefill instance from the top of its loop to its next wait: take whole prompts FCFS
    within the token budget, batch size and KV, then sleep or start the step."""
    zero = np.int64(0)  # not a literal (see `push`)
    p = ii[I_POOL, g]
    cap = fi[J_CAP, g]
    mbs = pi[P_MBS, p]
    budget = pi[P_BUDGET, p]  # <= 0: unlimited (`token_budget or math.inf`)
    tokens = 0
    sq = 0
    count = 0
    tail = -1
    failed = False  # one exit only (see `instance_loop`)
    while queue_length(g, p, ii, pi) > 0 and count < mbs:
        r = queue_head(g, p, ii, pi, qbuf)
        prompt = ri[r, R_PROMPT]
        if count > 0 and budget > 0 and tokens + prompt > budget:
            break
        if ii[I_KV, g] + held(prompt, ii[I_BLOCK, g]) > cap:
            if count == 0 and ii[I_KV, g] == 0:
                fail(st, ht, hk, r, prompt, p, now)
                failed = True
            break
        queue_pop(g, p, ri, ii, pi, qbuf)
        wait[p, r] += now - rf[r, F_QUEUED]
        change_kv(ii, fi, g, held(prompt, ii[I_BLOCK, g]), now)
        ri[r, R_BNEXT] = -1
        if tail >= 0:
            ri[tail, R_BNEXT] = r
        else:
            ii[I_BHEAD, g] = r
        tail = r
        count += 1
        tokens += prompt
        sq += prompt * prompt
    if failed:
        pass
    elif count == 0:
        ii[I_SLEEP, g] = 1
        ii[I_TRIG, g] = 0
    else:
        ii[I_BCOUNT, g] = count
        model, threshold = pi[P_MODEL, p], pi[P_THRESHOLD, p]
        dt = step_s(model, pf, p, threshold, tokens, float(sq), zero, zero, zero)
        if st[S_LOG] == 1:
            log_step(log_i, log_f, st, p, ii[I_LOCAL, g], now, dt, ii[I_KV, g], count, zero)
            r = ii[I_BHEAD, g]
            for _ in range(count):
                log_put(log_c, st, np.int64(S_NLOG_C), r)
                log_put(log_c, st, np.int64(S_NLOG_C), ri[r, R_PROMPT])
                r = ri[r, R_BNEXT]
        acc[0, p] += dt
        acc[1, p] += count * dt
        share = dt * pi[P_TP, p] / count
        r = ii[I_BHEAD, g]
        for _ in range(count):
            busy[p, r] += share
            r = ri[r, R_BNEXT]
        push(ht, hk, st, now + dt, np.int64(EV_STEP), g)


@njit_inline
def prefill_step_done(
    g: int, now: float, decode_pool: int, ri: np.ndarray, rf: np.ndarray, ii: np.ndarray,
    fi: np.ndarray, pi: np.ndarray, qbuf: np.ndarray, ht: np.ndarray, hk: np.ndarray,
    st: np.ndarray, tmp_g: np.ndarray, tmp_free: np.ndarray,
) -> None:  # fmt: skip
    """The end of a prefill step: every prompt of the batch joins the decode pool's queue, its
    KV to be transferred from this instance."""
    zero = np.int64(0)
    r = ii[I_BHEAD, g]
    count = ii[I_BCOUNT, g]
    ii[I_BHEAD, g] = -1
    ii[I_BCOUNT, g] = 0
    for _ in range(count):
        nxt = ri[r, R_BNEXT]
        leave(ri, ii, g, r)
        if ii[I_FIRST_AT_PREFILL, g] == 1:
            rf[r, F_FIRST] = now
        ri[r, R_LEFT] = 0
        if st[S_EMIT_AT_PREFILL] == 1:
            ri[r, R_GEN] += 1
        if ri[r, R_GEN] == ri[r, R_OUTPUT]:  # one output token: done, nothing to decode
            if math.isnan(rf[r, F_FIRST]):
                rf[r, F_FIRST] = now
            rf[r, F_DONE] = now
            change_kv(ii, fi, g, -held(ri[r, R_PROMPT], ii[I_BLOCK, g]), now)
        else:
            ri[r, R_NEEDS_T] = 1
            ri[r, R_SOURCE] = g
            submit(decode_pool, r, zero, now, ri, rf, ii, fi, pi, qbuf, ht, hk, st, tmp_g, tmp_free)
        r = nxt


# ------------------------------------------------------------------ arrivals and KV transfers


@njit_inline
def arrivals(
    first_call: bool, now: float, arrival: np.ndarray, ri: np.ndarray, rf: np.ndarray,
    ii: np.ndarray, fi: np.ndarray, pi: np.ndarray, qbuf: np.ndarray, ht: np.ndarray,
    hk: np.ndarray, st: np.ndarray, tmp_g: np.ndarray, tmp_free: np.ndarray,
) -> None:  # fmt: skip
    """The arrival process from its start or a timeout to its next timeout: submit every
    request that has arrived by now to pool 0, then wait for the next one."""
    zero = np.int64(0)
    n = arrival.shape[0]
    i = st[S_NEXT_ARRIVAL]
    if not first_call:
        submit(zero, i, zero, now, ri, rf, ii, fi, pi, qbuf, ht, hk, st, tmp_g, tmp_free)
        i += 1
    while i < n:
        t = arrival[i]
        if t > now:
            push(ht, hk, st, now + (t - now), np.int64(EV_ARRIVAL), zero)
            break
        submit(zero, i, zero, now, ri, rf, ii, fi, pi, qbuf, ht, hk, st, tmp_g, tmp_free)
        i += 1
    st[S_NEXT_ARRIVAL] = i


@njit
def trigger_put(
    link: int, now: float, ri: np.ndarray, ii: np.ndarray, ht: np.ndarray, hk: np.ndarray,
    st: np.ndarray,
) -> None:  # fmt: skip
    """SimPy's Resource._trigger_put for a link of capacity 1: grant the queue's head if free."""
    head = ii[I_LQHEAD, link]
    if head >= 0 and ii[I_USERS, link] == 0:
        nxt = ri[head, R_TNEXT]
        ii[I_LQHEAD, link] = nxt
        if nxt < 0:
            ii[I_LQTAIL, link] = -1
        ii[I_USERS, link] = 1
        push(ht, hk, st, now, np.int64(EV_T_GRANT), head)


@njit_inline
def link_request(
    r: int, now: float, ri: np.ndarray, ii: np.ndarray, ht: np.ndarray, hk: np.ndarray,
    st: np.ndarray,
) -> None:  # fmt: skip
    """A transfer process starts: it joins its link's FCFS queue (granted at once if free)."""
    link = ri[r, R_LINK]
    ri[r, R_TNEXT] = -1
    tail = ii[I_LQTAIL, link]
    if tail >= 0:
        ri[tail, R_TNEXT] = r
    else:
        ii[I_LQHEAD, link] = r
    ii[I_LQTAIL, link] = r
    trigger_put(link, now, ri, ii, ht, hk, st)


@njit
def transfer_done(
    r: int, now: float, ri: np.ndarray, rf: np.ndarray, ii: np.ndarray, fi: np.ndarray,
    ht: np.ndarray, hk: np.ndarray, st: np.ndarray, tr_i: np.ndarray, tr_f: np.ndarray,
) -> None:  # fmt: skip
    """A transfer's end: release the link, log it, free the prompt's KV on the prefill
    instance, and the sequence joins the decode instance's running list."""
    link = ri[r, R_LINK]
    ii[I_USERS, link] = 0
    push(ht, hk, st, now, np.int64(EV_RELEASE), link)
    k = st[S_NTRANSFERS]
    st[S_NTRANSFERS] = k + 1
    tr_i[0, k] = r
    tr_i[1, k] = ii[I_LOCAL, link]
    tr_f[0, k] = rf[r, F_TSTART]
    tr_f[1, k] = now
    src = ri[r, R_SOURCE]
    change_kv(ii, fi, src, -held(ri[r, R_PROMPT], ii[I_BLOCK, src]), now)
    notify(ii, ht, hk, st, src, now)
    ri[r, R_SOURCE] = -1
    ri[r, R_NEEDS_T] = 0
    ii[I_IN_T, link] -= 1
    append_running(ri, ii, link, r)
    notify(ii, ht, hk, st, link, now)


@njit_inline
def transfer_start(
    r: int, now: float, kv_bytes_per_token: float, link_bytes_per_s: float, ri: np.ndarray,
    rf: np.ndarray, ii: np.ndarray, fi: np.ndarray, ht: np.ndarray, hk: np.ndarray,
    st: np.ndarray, tr_i: np.ndarray, tr_f: np.ndarray,
) -> None:  # fmt: skip
    """The link was granted: the prompt's KV moves, taking prompt x bytes per token / bandwidth."""
    rf[r, F_TSTART] = now
    dt = ri[r, R_PROMPT] * kv_bytes_per_token / link_bytes_per_s
    if dt > 0:
        push(ht, hk, st, now + dt, np.int64(EV_T_DONE), r)
    else:
        transfer_done(r, now, ri, rf, ii, fi, ht, hk, st, tr_i, tr_f)


# ------------------------------------------------------------------ the whole run


@njit
def request_state(prompt: np.ndarray, output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every request's integer and float fields, before it arrives."""
    n = prompt.shape[0]
    ri = np.empty((n, NRI), np.int64)
    rf = np.empty((n, NRF))
    for r in range(n):
        ri[r, R_PROMPT] = prompt[r]
        ri[r, R_OUTPUT] = output[r]
        ri[r, R_GEN] = 0
        ri[r, R_LEFT] = prompt[r]
        ri[r, R_PDONE] = 0
        ri[r, R_KV] = 0
        ri[r, R_NEEDS_T] = 0
        ri[r, R_SOURCE] = -1
        ri[r, R_NEXT] = -1
        ri[r, R_PREV] = -1
        ri[r, R_CHUNK] = 0
        ri[r, R_ORD] = 0
        ri[r, R_TNEXT] = -1
        ri[r, R_LINK] = -1
        ri[r, R_BNEXT] = -1
        ri[r, R_QNEXT] = -1
        rf[r, F_QUEUED] = 0.0
        rf[r, F_TSTART] = 0.0
        rf[r, F_FIRST] = np.nan
        rf[r, F_DONE] = np.nan
    return ri, rf


@njit
def instance_state(
    pool_in: np.ndarray, pool_cap: np.ndarray, decode_pool: int, first_token_prefill: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pool's and instance's fields: pools from `pool_in`, instances idle and empty.
    (Initialised by loops: numba compiles row-slice assignments slowly.)"""
    npools = pool_in.shape[1]
    pi = np.zeros((NPI, npools), np.int64)
    ninst = 0
    for p in range(npools):
        for k in range(P_IN):
            pi[k, p] = pool_in[k, p]
        ninst += pool_in[P_NINST, p]
    ii = np.zeros((NII, ninst), np.int64)
    fi = np.zeros((NFI, ninst))
    for p in range(npools):
        prefill_pool = decode_pool >= 0 and p != decode_pool
        for j in range(pool_in[P_NINST, p]):
            g = pool_in[P_FIRST, p] + j
            ii[I_POOL, g] = p
            ii[I_LOCAL, g] = j
            ii[I_KIND, g] = 1 if prefill_pool else 0
            # monolithic: first token at the prefill; decode pool: never; prefill pool: per spec
            fap = first_token_prefill if prefill_pool else decode_pool < 0
            ii[I_FIRST_AT_PREFILL, g] = 1 if fap else 0
            ii[I_PHEAD, g] = -1
            ii[I_PTAIL, g] = -1
            ii[I_DHEAD, g] = -1
            ii[I_DTAIL, g] = -1
            ii[I_LQHEAD, g] = -1
            ii[I_LQTAIL, g] = -1
            ii[I_BHEAD, g] = -1
            ii[I_BTAIL, g] = -1
            ii[I_ROUTING, g] = pool_in[P_ROUTING, p]
            ii[I_QHEAD, g] = -1
            ii[I_QTAIL, g] = -1
            fi[J_CAP, g] = pool_cap[p]
            ii[I_BLOCK, g] = pool_in[P_BLOCK, p]
    return pi, ii, fi


@njit
def event_loop(
    arrival: np.ndarray, decode_pool: int, kv_bytes_per_token: float, link_bytes_per_s: float,
    ri: np.ndarray, rf: np.ndarray, ii: np.ndarray, fi: np.ndarray, pi: np.ndarray,
    pf: np.ndarray, qbuf: np.ndarray, wait: np.ndarray, busy: np.ndarray, acc: np.ndarray,
    ht: np.ndarray, hk: np.ndarray, st: np.ndarray, tmp_g: np.ndarray, tmp_free: np.ndarray,
    tr_i: np.ndarray, tr_f: np.ndarray, log_i: np.ndarray, log_f: np.ndarray,
    log_c: np.ndarray, log_d: np.ndarray,
) -> None:  # fmt: skip
    """Start the processes as the reference does (instances in pool order, prefill before
    decode, then arrivals; all at time 0, URGENT), then process events in SimPy's order until
    none is left or a process failed."""
    ninst = ii.shape[1]
    for g in range(ninst):
        push(ht, hk, st, 0.0, np.int64(EV_START), g)
    push(ht, hk, st, 0.0, np.int64(EV_START_ARRIVALS), np.int64(0))
    while st[S_HSIZE] > 0:
        now, kind, arg = pop(ht, hk, st)
        if kind == EV_STEP or kind == EV_WAKE or kind == EV_START:  # noqa: SIM109 (numba)
            g = arg
            if kind == EV_WAKE:
                ii[I_SLEEP, g] = 0
                ii[I_TRIG, g] = 0
            if ii[I_KIND, g] == 0:
                if kind == EV_STEP:
                    instance_step_done(g, now, ri, rf, ii, fi, busy, st)
                instance_loop(
                    g, now, ri, rf, ii, fi, pi, pf, qbuf, wait, busy, acc, ht, hk, st, tmp_g,
                    tmp_free, log_i, log_f, log_c, log_d,
                )  # fmt: skip
            else:
                if kind == EV_STEP:
                    prefill_step_done(
                        g, now, decode_pool, ri, rf, ii, fi, pi, qbuf, ht, hk, st, tmp_g, tmp_free
                    )
                prefill_loop(
                    g, now, ri, rf, ii, fi, pi, pf, qbuf, wait, busy, acc, ht, hk, st, log_i,
                    log_f, log_c, log_d,
                )  # fmt: skip
        elif kind == EV_ARRIVAL or kind == EV_START_ARRIVALS:  # noqa: SIM109
            first_call = kind == EV_START_ARRIVALS
            arrivals(
                first_call, now, arrival, ri, rf, ii, fi, pi, qbuf, ht, hk, st, tmp_g, tmp_free
            )
        elif kind == EV_T_START:
            link_request(arg, now, ri, ii, ht, hk, st)
        elif kind == EV_T_GRANT:
            transfer_start(
                arg, now, kv_bytes_per_token, link_bytes_per_s, ri, rf, ii, fi, ht, hk, st, tr_i,
                tr_f,
            )  # fmt: skip
        elif kind == EV_T_DONE:
            transfer_done(arg, now, ri, rf, ii, fi, ht, hk, st, tr_i, tr_f)
        elif kind == EV_RELEASE:
            trigger_put(arg, now, ri, ii, ht, hk, st)
        else:  # EV_FAIL
            break


@njit
def kernel(
    arrival: np.ndarray, prompt: np.ndarray, output: np.ndarray, route: np.ndarray,
    pool_in: np.ndarray, pf: np.ndarray, pool_cap: np.ndarray, decode_pool: int,
    first_token_prefill: bool, emit_at_prefill: bool, kv_bytes_per_token: float,
    link_bytes_per_s: float, log: bool,
    log_i: np.ndarray, log_f: np.ndarray, log_c: np.ndarray, log_d: np.ndarray,
):  # noqa: ANN201 # fmt: skip
    """Run the whole simulation (see `distsim.sim.fast_batched` for the correspondence to SimPy).
    With `log`, every step is recorded in the log buffers (st counts the entries; if a buffer
    was too small the caller runs again with larger ones)."""
    n = arrival.shape[0]
    npools = pool_in.shape[1]
    ri, rf = request_state(prompt, output)
    pi, ii, fi = instance_state(pool_in, pool_cap, decode_pool, first_token_prefill)
    ninst = ii.shape[1]
    wait = np.zeros((npools, n))
    busy = np.zeros((npools, n))
    acc = np.zeros((2, npools))  # step time, batch size x step time
    qbuf = np.empty((npools, max(n, 1)), np.int64)
    for p in range(npools):  # `random`: the instances drawn, one column of `route` per pool
        if pool_in[P_ROUTING, p] == RT_RANDOM:
            for r in range(n):
                qbuf[p, r] = route[r, p]
    # pending events: one per instance, the arrival process, one failure per instance, and
    # per request at most one transfer event and one link release
    hcap = 2 * n + 2 * ninst + 16
    ht = np.empty(hcap)
    hk = np.empty((3, hcap), np.int64)
    st = np.zeros(NST, np.int64)
    st[S_LOG] = 1 if log else 0
    st[S_EMIT_AT_PREFILL] = 1 if emit_at_prefill else 0
    tmp_g = np.empty(max(ninst, 1), np.int64)
    tmp_free = np.empty(max(ninst, 1))
    tr_i = np.empty((2, n), np.int64)
    tr_f = np.empty((2, n))

    # The event loop works on unmanaged views of these arrays (see `unmanaged`); `owners`
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
    event_loop(
        arrival, decode_pool, kv_bytes_per_token, link_bytes_per_s, unmanaged(ri), unmanaged(rf),
        unmanaged(ii), unmanaged(fi), unmanaged(pi), unmanaged(pf), unmanaged(qbuf),
        unmanaged(wait), unmanaged(busy), unmanaged(acc), unmanaged(ht), unmanaged(hk),
        unmanaged(st), unmanaged(tmp_g), unmanaged(tmp_free), unmanaged(tr_i), unmanaged(tr_f),
        unmanaged(log_i), unmanaged(log_f), unmanaged(log_c), unmanaged(log_d),
    )  # fmt: skip

    nt = st[S_NTRANSFERS]
    kv_state = np.empty((3, ninst))
    for g in range(ninst):
        kv_state[0, g] = fi[J_KV_INTEGRAL, g]
        kv_state[1, g] = ii[I_KV, g]
        kv_state[2, g] = fi[J_KV_SINCE, g]
    first = rf[:, F_FIRST].copy()
    done = rf[:, F_DONE].copy()
    transfers_i = tr_i[:, :nt].copy()
    transfers_f = tr_f[:, :nt].copy()
    assert len(owners) > 0  # the views above were used while this held their arrays
    return first, done, wait, busy, acc, st, transfers_i, transfers_f, kv_state
