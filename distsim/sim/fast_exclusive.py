"""The seed's exclusive model as FCFS multi-server recursions compiled with numba.

Same model, same signatures and the same numbers as `simpy_exclusive` (the reference), to the
last bit of every timestamp, because it reproduces what SimPy does rather than an idealisation:

- Arrival clock. SimPy's source sleeps `t - now` and wakes at `now + (t - now)`, which can differ
  from `t` by one ulp; requests join the queue at that clock value (waits are measured from the
  drawn `t`, as in SimPy).
- A pool is FCFS over its join order: the k-th request to join starts at max(its join time, the
  earliest time a GPU is free), and a GPU is free again at start + service, with the service
  added exactly as SimPy's successive timeouts add it ((start + prefill) + decode on one GPU).
  Simultaneous releases and joins do not change start times: SimPy grants the head of the queue
  at the instant a GPU frees, whichever of the two events it processes first.
- Join order. Prefill (and the monolithic pool) are joined in arrival order, ties in draw order.
  The decode pool is joined in the order SimPy processes prefill completions: by completion time,
  and for equal completion times by the order their prefill timeouts were created, which is the
  order of their prefill grants — FIFO, i.e. prefill queue order. So: sorted by (completion
  time, arrival index). The prefill pass gets exactly that order for free: its min-heap of GPU
  free times, keyed by (free time, request index), pops every completion once, in that order.

Why numba (measured by benchmarks/bench_engine.py): a request costs a handful of float
operations and one O(log gpus) heap update, but the recursion is sequential, so numpy cannot
vectorise it for more than one GPU (for one GPU only as a max-plus scan whose float rounding
differs from SimPy's). Even a stripped-down pure-Python heapq loop costs more per request than
workload generation and metrics together; the compiled loops cost a small fraction of either
(figures: benchmarks/README.md). Kernels compile lazily on first use and are cached on disk
(`distsim.sim.jit`).
"""

from __future__ import annotations

import numpy as np

from distsim.sim.jit import njit
from distsim.sim.timeline import PoolTimeline, ServiceTimes, Timeline
from distsim.spec.study import Disaggregated, Monolithic
from distsim.workload.generate import Requests


@njit
def _sift_down(heap_t: np.ndarray, heap_i: np.ndarray, size: int) -> None:
    """Restore the min-heap (by time, then request index) after its root was replaced."""
    t = heap_t[0]
    k = heap_i[0]
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        right = child + 1
        if right < size and (
            heap_t[right] < heap_t[child]
            or (heap_t[right] == heap_t[child] and heap_i[right] < heap_i[child])
        ):
            child = right
        if heap_t[child] < t or (heap_t[child] == t and heap_i[child] < k):
            heap_t[pos] = heap_t[child]
            heap_i[pos] = heap_i[child]
            pos = child
        else:
            break
    heap_t[pos] = t
    heap_i[pos] = k


@njit
def _monolithic_kernel(
    arrival_s: np.ndarray, prefill_s: np.ndarray, decode_s: np.ndarray, gpus: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Queue wait, first-token and done times of one FCFS pool holding a GPU for prefill then
    decode. Requests join at SimPy's arrival clock, in index order."""
    n = arrival_s.shape[0]
    wait = np.empty(n)
    first = np.empty(n)
    done = np.empty(n)
    slots = min(gpus, max(n, 1))  # GPUs beyond the number of requests are never used
    heap_t = np.zeros(slots)  # when each GPU is free again; a min-heap
    heap_i = np.full(slots, -1, dtype=np.int64)
    now = 0.0
    for i in range(n):
        t = arrival_s[i]
        if t > now:
            now = now + (t - now)  # SimPy's source wakes at now + (t - now)
        free = heap_t[0]
        s = now if now > free else free
        f = s + prefill_s[i]
        d = f + decode_s[i]
        wait[i] = s - t
        first[i] = f
        done[i] = d
        heap_t[0] = d
        heap_i[0] = i
        _sift_down(heap_t, heap_i, slots)
    return wait, first, done


@njit
def _prefill_kernel(
    arrival_s: np.ndarray, prefill_s: np.ndarray, gpus: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Queue wait and completion time of each request in the prefill pool, and the order in
    which the completions happen (the decode pool's join order).

    Every request's (completion, index) key is popped from the heap exactly once, and popped
    keys never decrease (the key pushed in place of a popped one is larger), so the pop
    sequence is the completion order with ties broken by index.
    """
    n = arrival_s.shape[0]
    wait = np.empty(n)
    ready = np.empty(n)
    order = np.empty(n, dtype=np.int64)
    slots = min(gpus, max(n, 1))
    heap_t = np.zeros(slots)
    heap_i = np.full(slots, -1, dtype=np.int64)  # -1: a GPU no request has used yet
    k = 0
    now = 0.0
    for i in range(n):
        t = arrival_s[i]
        if t > now:
            now = now + (t - now)
        free = heap_t[0]
        if heap_i[0] >= 0:
            order[k] = heap_i[0]
            k += 1
        s = now if now > free else free
        c = s + prefill_s[i]
        wait[i] = s - t
        ready[i] = c
        heap_t[0] = c
        heap_i[0] = i
        _sift_down(heap_t, heap_i, slots)
    size = slots
    while size > 0:  # the completions still in service, in order
        if heap_i[0] >= 0:
            order[k] = heap_i[0]
            k += 1
        size -= 1
        heap_t[0] = heap_t[size]
        heap_i[0] = heap_i[size]
        _sift_down(heap_t, heap_i, size)
    return wait, ready, order


@njit
def _decode_kernel(
    ready_s: np.ndarray, decode_s: np.ndarray, order: np.ndarray, gpus: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Queue wait, start and done time of each request in the decode pool, which requests join
    in `order`, each at its `ready_s`."""
    n = ready_s.shape[0]
    wait = np.empty(n)
    start = np.empty(n)
    done = np.empty(n)
    slots = min(gpus, max(n, 1))
    heap_t = np.zeros(slots)
    heap_i = np.full(slots, -1, dtype=np.int64)
    for k in range(n):
        i = order[k]
        r = ready_s[i]
        free = heap_t[0]
        s = r if r > free else free
        d = s + decode_s[i]
        wait[i] = s - r
        start[i] = s
        done[i] = d
        heap_t[0] = d
        heap_i[0] = i
        _sift_down(heap_t, heap_i, slots)
    return wait, start, done


# ------------------------------------------------------------- routed pools (one queue per GPU)

ROUTING_CODES = {"round_robin": 0, "random": 1, "least_loaded": 2}


@njit
def _arrival_clock(arrival_s: np.ndarray) -> np.ndarray:
    """SimPy's clock when each request joins: its source wakes at now + (t - now)."""
    n = arrival_s.shape[0]
    out = np.empty(n)
    now = 0.0
    for i in range(n):
        t = arrival_s[i]
        if t > now:
            now = now + (t - now)
        out[i] = now
    return out


@njit
def _routed_kernel(
    clock: np.ndarray,
    since: np.ndarray,
    order: np.ndarray,
    first_s: np.ndarray,
    then_s: np.ndarray,
    tokens: np.ndarray,
    gpus: int,
    mode: int,
    u: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A pool whose requests are routed to one GPU each when they join (in `order`, request i
    at `clock[i]`); every GPU serves its own FCFS queue, a request holding it for first_s then
    then_s (SimPy's successive timeouts: (start + first) + then).

    Returns (wait since `since`, start, start + first, end). Least loaded: outstanding tokens
    of a GPU are the `tokens` of the requests routed to it whose end is after the join time;
    each GPU's ends increase in routing order, so a linked list per GPU drops finished ones from
    its front.
    """
    n = clock.shape[0]
    wait = np.empty(n)
    start = np.empty(n)
    mid = np.empty(n)
    end = np.empty(n)
    free = np.zeros(gpus)
    load = np.zeros(gpus, dtype=np.int64)
    head = np.full(gpus, -1, dtype=np.int64)
    tail = np.full(gpus, -1, dtype=np.int64)
    nxt = np.full(n, -1, dtype=np.int64)
    for k in range(n):
        i = order[k]
        now = clock[i]
        if mode == 0:
            g = k % gpus
        elif mode == 1:
            g = min(int(u[i] * gpus), gpus - 1)
        else:
            g = 0
            best = np.int64(-1)
            for q in range(gpus):
                h = head[q]
                while h >= 0 and end[h] <= now:
                    load[q] -= tokens[h]
                    h = nxt[h]
                head[q] = h
                if h < 0:
                    tail[q] = -1
                if best < 0 or load[q] < best:
                    best = load[q]
                    g = q
            if tail[g] >= 0:
                nxt[tail[g]] = i
            else:
                head[g] = i
            tail[g] = i
            load[g] += tokens[i]
        f = free[g]
        s = now if now > f else f
        m = s + first_s[i]
        e = m + then_s[i]
        wait[i] = s - since[i]
        start[i] = s
        mid[i] = m
        end[i] = e
        free[g] = e
    return wait, start, mid, end


def _route_u(route_u: np.ndarray | None, n: int, column: int, routing: str) -> np.ndarray:
    if routing != "random":
        return np.zeros(n)
    if route_u is None:
        raise ValueError("routing: random needs the replication's routing draws (route_u)")
    return _f64(route_u[:, column])


def decode_join_order(ready_s: np.ndarray, start_s: np.ndarray) -> np.ndarray:
    """Order in which routed prefills join the decode pool: by completion time, then start
    time (the earlier-started prefill's timeout was created first), then request index."""
    index = np.arange(ready_s.size)
    return np.lexsort((index, start_s, ready_s)).astype(np.int64)


def _f64(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float64)


def run_monolithic(
    requests: Requests,
    arch: Monolithic,
    service: ServiceTimes,
    route_u: np.ndarray | None = None,
) -> Timeline:
    """Simulate the monolithic pool to completion of every request (same result as SimPy).

    `route_u`: per request, uniforms on [0, 1) (column 0: this pool) for `routing: random`."""
    arrival = _f64(requests.arrival_s)
    busy = service.prefill_s + service.decode_s
    if arch.routing == "central":
        wait, first, done = _monolithic_kernel(
            arrival, _f64(service.prefill_s), _f64(service.decode_s), arch.gpus
        )
    else:
        n = arrival.size
        tokens = (requests.prompt_tokens + requests.output_tokens).astype(np.int64)
        wait, _, first, done = _routed_kernel(
            _arrival_clock(arrival), arrival, np.arange(n, dtype=np.int64),
            _f64(service.prefill_s), _f64(service.decode_s), tokens, arch.gpus,
            ROUTING_CODES[arch.routing], _route_u(route_u, n, 0, arch.routing),
        )  # fmt: skip
    return Timeline(first, done, {"gpu": PoolTimeline(arch.gpus, wait, busy)})


def _routed_disaggregated(
    requests: Requests, arch: Disaggregated, service: ServiceTimes, route_u: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(prefill wait, ready, decode wait, decode start, done) with both pools routed."""
    arrival = _f64(requests.arrival_s)
    n = arrival.size
    mode = ROUTING_CODES[arch.routing]
    zeros = np.zeros(n)
    wait_p, start_p, ready, _ = _routed_kernel(
        _arrival_clock(arrival), arrival, np.arange(n, dtype=np.int64), _f64(service.prefill_s),
        zeros, requests.prompt_tokens.astype(np.int64), arch.prefill_gpus, mode,
        _route_u(route_u, n, 0, arch.routing),
    )  # fmt: skip
    wait_d, start_d, done, _ = _routed_kernel(
        ready, ready, decode_join_order(ready, start_p), _f64(service.decode_s), zeros,
        requests.output_tokens.astype(np.int64), arch.decode_gpus, mode,
        _route_u(route_u, n, 1, arch.routing),
    )  # fmt: skip
    return wait_p, ready, wait_d, start_d, done


def run_disaggregated(
    requests: Requests,
    arch: Disaggregated,
    service: ServiceTimes,
    route_u: np.ndarray | None = None,
) -> Timeline:
    """Simulate the prefill and decode pools to completion of every request (same as SimPy).

    `route_u`: per request, uniforms on [0, 1) (column 0: prefill, 1: decode) for `random`."""
    arrival = _f64(requests.arrival_s)
    if arch.routing == "central":
        wait_p, ready, order = _prefill_kernel(arrival, _f64(service.prefill_s), arch.prefill_gpus)
        wait_d, start_d, done = _decode_kernel(
            ready, _f64(service.decode_s), order, arch.decode_gpus
        )
    else:
        wait_p, ready, wait_d, start_d, done = _routed_disaggregated(
            requests, arch, service, route_u
        )
    if arch.first_token == "prefill":
        first = ready
    else:
        first = start_d
        first += service.decode_token_s  # in place: start_d is not needed any more
    return Timeline(
        first,
        done,
        {
            "prefill": PoolTimeline(arch.prefill_gpus, wait_p, service.prefill_s.copy()),
            "decode": PoolTimeline(arch.decode_gpus, wait_d, service.decode_s.copy()),
        },
    )


def load_kernels() -> None:
    """Compile every kernel now, or load it from numba's on-disk cache.

    For a driver to call before it starts worker processes: the workers then load the cached
    kernels instead of all compiling them at once on a fresh machine. Calling it is never needed
    for correctness.
    """
    one = np.ones(1)
    _monolithic_kernel(one, one, one, 1)
    _, ready, order = _prefill_kernel(one, one, 1)
    _decode_kernel(ready, one, order, 1)
    _routed_kernel(_arrival_clock(one), one, order, one, one, order, 1, 2, one)
