"""Workload generation: the requests of one replication, as arrays, before anything is simulated.

Pure functions of (workload spec, duration, seed, replication). Each quantity comes from its own
named stream, so changing the arrival rate leaves the size draws of every request untouched and
every architecture of a replication serves exactly the same requests.

Streams: `arrivals` (arrival gaps; for a trace window, where the window starts), `prompt_tokens`
and `output_tokens` (sizes; for a resampled trace, `prompt_tokens` picks the (prompt, output)
pair), `classes` (the class of each request of a mixture) and, per mixture class,
`prompt_tokens.<class>` / `output_tokens.<class>`.

Trace and empirical data come from the per-process cache of `distsim.workload.trace_files`: read
once per process, not per replication; the spec carries only the file's path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from distsim.spec.workload import (
    Arrival,
    Empirical,
    GammaArrival,
    PoissonArrival,
    TraceWorkload,
    Workload,
)
from distsim.workload import streams as rngs
from distsim.workload.distributions import rounded_mean, sample
from distsim.workload.trace_files import TraceTable, load_column, load_trace

DEFAULT_CLASS = "default"


@dataclass(frozen=True)
class Requests:
    """One replication's requests in arrival order (ties keep their draw order).

    `class_id[i]` indexes `class_names`: the mixture class of request i (all 0, class
    "default", for a workload without a mix).
    """

    arrival_s: np.ndarray  # float64, non-decreasing, in [0, duration_s)
    prompt_tokens: np.ndarray  # int64 >= 1
    output_tokens: np.ndarray  # int64 >= 1
    class_id: np.ndarray = field(default=None)  # type: ignore[assignment]  # int64; None -> zeros
    class_names: tuple[str, ...] = (DEFAULT_CLASS,)

    def __post_init__(self) -> None:
        if self.class_id is None:
            object.__setattr__(self, "class_id", np.zeros(self.arrival_s.shape[0], np.int64))

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


def effective_arrival(workload: Workload) -> Arrival | None:
    """The arrival process actually run, with its rate filled in; None when a trace gives the
    arrivals (modes window and replay).

    For a resampled trace: `workload.arrival` (Poisson if absent) at its rate_rps, or the trace's
    mean rate if that is left out, times rate_scale.
    """
    trace = workload.trace
    if trace is None:
        return workload.arrival
    if trace.mode != "resample":
        return None
    arrival = workload.arrival or PoissonArrival(process="poisson")
    base = arrival.rate_rps
    if base is None:
        base = load_trace(trace.path).mean_rate_rps
    return arrival.model_copy(update={"rate_rps": base * trace.rate_scale})


def window_start_s(table: TraceTable, length_s: float, u: float) -> float:
    """Start (trace time) of a window of `length_s` placed at fraction `u` of the free range."""
    return u * max(table.span_s - length_s, 0.0)


def _from_trace(
    trace: TraceWorkload, table: TraceTable, duration_s: float, seed: int, replication: int
) -> Requests:
    """Window or replay: arrivals and sizes as recorded, on a time axis divided by rate_scale."""
    length_s = duration_s * trace.rate_scale  # trace seconds covered by the run
    if trace.mode == "window":
        u = float(rngs.stream(seed, replication, rngs.ARRIVALS).random())
        start_s = window_start_s(table, length_s, u)
    else:
        start_s = 0.0
    lo = int(np.searchsorted(table.arrival_s, start_s, side="left"))
    hi = int(np.searchsorted(table.arrival_s, start_s + length_s, side="left"))
    arrivals = (table.arrival_s[lo:hi] - start_s) / trace.rate_scale
    keep = arrivals < duration_s  # guards the rounding of the division at the far edge
    return Requests(
        arrival_s=arrivals[keep],
        prompt_tokens=table.prompt_tokens[lo:hi][keep].copy(),
        output_tokens=table.output_tokens[lo:hi][keep].copy(),
    )


def _mixture(
    workload: Workload, n: int, seed: int, replication: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class_id, prompt, output) of `n` mixture requests.

    Class i is chosen by inverting the weights' CDF at a uniform draw, and each class draws its
    sizes for all n positions from its own streams, so request i's sizes given its class do not
    depend on the other classes or on the weights (common random numbers across a weight sweep).
    """
    mix = workload.mix or []
    weights = np.array([c.weight for c in mix], dtype=np.float64)
    cdf = np.cumsum(weights) / weights.sum()
    u = rngs.stream(seed, replication, rngs.CLASSES).random(n)
    class_id = np.minimum(np.searchsorted(cdf, u, side="right"), len(mix) - 1).astype(np.int64)
    prompt = np.zeros(n, np.int64)
    output = np.zeros(n, np.int64)
    for i, cls in enumerate(mix):
        mine = class_id == i
        p_rng = rngs.stream(seed, replication, f"{rngs.PROMPT_TOKENS}.{cls.name}")
        o_rng = rngs.stream(seed, replication, f"{rngs.OUTPUT_TOKENS}.{cls.name}")
        prompt[mine] = sample(cls.prompt_tokens, p_rng, n)[mine]
        output[mine] = sample(cls.output_tokens, o_rng, n)[mine]
    return class_id, prompt, output


def generate(workload: Workload, duration_s: float, seed: int, replication: int) -> Requests:
    """The requests of replication `replication` of a study with root seed `seed`."""
    trace = workload.trace
    if trace is not None and trace.mode != "resample":
        return _from_trace(trace, load_trace(trace.path), duration_s, seed, replication)
    arrival = effective_arrival(workload)
    assert arrival is not None  # validated: a non-trace workload has an arrival process
    arrivals = arrival_times(arrival, duration_s, rngs.stream(seed, replication, rngs.ARRIVALS))
    n = arrivals.shape[0]
    if trace is not None:  # resample (prompt, output) pairs
        table = load_trace(trace.path)
        pick = rngs.stream(seed, replication, rngs.PROMPT_TOKENS).integers(0, len(table), n)
        return Requests(
            arrival_s=arrivals,
            prompt_tokens=table.prompt_tokens[pick],
            output_tokens=table.output_tokens[pick],
        )
    if workload.mix is not None:
        class_id, prompt, output = _mixture(workload, n, seed, replication)
        names = tuple(c.name for c in workload.mix)
        return Requests(arrivals, prompt, output, class_id=class_id, class_names=names)
    assert workload.prompt_tokens is not None and workload.output_tokens is not None
    prompt = sample(workload.prompt_tokens, rngs.stream(seed, replication, rngs.PROMPT_TOKENS), n)
    output = sample(workload.output_tokens, rngs.stream(seed, replication, rngs.OUTPUT_TOKENS), n)
    return Requests(arrival_s=arrivals, prompt_tokens=prompt, output_tokens=output)


def data_files(workload: Workload) -> list[tuple[str, str | None]]:
    """Data files the workload reads: (path, None) for a trace, (path, column) for an empirical
    size column; no duplicates.

    What a runner ships to remote workers (`tracedata.snapshot` / `install`) if they do not share
    the driver's filesystem.
    """
    files: list[tuple[str, str | None]] = []
    if workload.trace is not None:
        files.append((workload.trace.path, None))
    dists = [workload.prompt_tokens, workload.output_tokens]
    for cls in workload.mix or []:
        dists += [cls.prompt_tokens, cls.output_tokens]
    for dist in dists:
        if isinstance(dist, Empirical) and (dist.path, dist.column) not in files:
            files.append((dist.path, dist.column))
    return files


def data_digests(workload: Workload) -> dict[str, str]:
    """SHA-256 of every data file the workload reads, by path.

    Part of what is simulated: a runner folding these into a scenario's id never reuses results
    computed from an older version of a trace at the same path.
    """
    out: dict[str, str] = {}
    for path, column in data_files(workload):
        out[path] = load_trace(path).sha256 if column is None else load_column(path, column).sha256
    return out


# ---------------------------------------------------------------- what the workload offers


@dataclass(frozen=True)
class WorkloadMeans:
    """Expected arrival rate and mean sizes of what is simulated over [0, duration_s).

    Offered load is rate x mean service time, so these three numbers are all it needs.
    """

    rate_rps: float
    prompt_tokens: float
    output_tokens: float


def window_weights(table: TraceTable, length_s: float) -> np.ndarray:
    """P(trace request i falls in a window of `length_s` trace seconds placed uniformly at random).

    The start a is uniform on [0, W], W = span - length; request i at t_i is inside when
    t_i - length < a <= t_i. With W = 0 the window is fixed at [0, length).
    """
    t = table.arrival_s
    free_s = table.span_s - length_s
    if free_s <= 0:
        return (t < length_s).astype(np.float64)
    covered = np.minimum(t, free_s) - np.maximum(t - length_s, 0.0)
    return np.clip(covered, 0.0, None) / free_s


def expected_means(workload: Workload, duration_s: float | None = None) -> WorkloadMeans:
    """Exact expected rate and sizes of the generated requests (what offered load is built on).

    - a process with size distributions: the process's rate, the rounded-and-clamped means;
    - a mixture: weight-averaged class means;
    - a trace window: each trace request weighted by its probability of falling in the window
      (so rate x duration is the expected number of requests, exactly);
    - a replay: the replayed part of the trace, exactly;
    - a resample: the process's rate and the trace's mean sizes.
    Without `duration_s`, window and replay use the whole trace (the long-run figures).
    """
    trace = workload.trace
    if trace is not None:
        table = load_trace(trace.path)
        if trace.mode == "resample":
            arrival = effective_arrival(workload)
            assert arrival is not None and arrival.rate_rps is not None
            return WorkloadMeans(
                rate_rps=float(arrival.rate_rps),
                prompt_tokens=float(table.prompt_tokens.mean()),
                output_tokens=float(table.output_tokens.mean()),
            )
        if duration_s is None:
            weights = np.ones(len(table))
            seconds = table.span_s / trace.rate_scale
            count = len(table) - 1.0  # gaps per span: the long-run rate
        else:
            length_s = duration_s * trace.rate_scale
            if trace.mode == "window":
                weights = window_weights(table, length_s)
            else:
                weights = (table.arrival_s < length_s).astype(np.float64)
            seconds, count = duration_s, float(weights.sum())
        total = float(weights.sum())
        if total == 0:  # pragma: no cover - validation keeps windows inside the trace
            return WorkloadMeans(0.0, float("nan"), float("nan"))
        return WorkloadMeans(
            rate_rps=count / seconds,
            prompt_tokens=float(np.dot(weights, table.prompt_tokens)) / total,
            output_tokens=float(np.dot(weights, table.output_tokens)) / total,
        )
    assert workload.arrival is not None and workload.arrival.rate_rps is not None
    rate = float(workload.arrival.rate_rps)
    if workload.mix is not None:
        w = np.array([c.weight for c in workload.mix], dtype=np.float64)
        w = w / w.sum()
        prompt = float(np.dot(w, [rounded_mean(c.prompt_tokens) for c in workload.mix]))
        output = float(np.dot(w, [rounded_mean(c.output_tokens) for c in workload.mix]))
        return WorkloadMeans(rate, prompt, output)
    assert workload.prompt_tokens is not None and workload.output_tokens is not None
    return WorkloadMeans(
        rate, rounded_mean(workload.prompt_tokens), rounded_mean(workload.output_tokens)
    )


def arrival_rate_rps(workload: Workload, duration_s: float | None = None) -> float:
    """The expected arrival rate of the generated requests (see `expected_means`)."""
    return expected_means(workload, duration_s).rate_rps
