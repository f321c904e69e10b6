"""From an engine's trace to the numbers of one replication.

Measured requests are those arriving in [warmup_s, duration_s); earlier ones are simulated (they
load the system) but not measured. Every simulated request runs to completion, so late arrivals
are never censored. Quantiles use numpy's default (linear) method.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from distsim.sim.timeline import Timeline
from distsim.spec.serving import Slo
from distsim.spec.study import Architecture, Disaggregated, Gpu, Monolithic
from distsim.spec.workload import Workload
from distsim.workload.generate import Requests, expected_means

QUANTILES = {"p50": 0.50, "p90": 0.90, "p99": 0.99}


@dataclass(frozen=True)
class PoolMetrics:
    """One pool: mean queue wait of measured requests, measured utilization, offered load."""

    queue_wait_mean_s: float
    utilization: float
    offered_load: float
    batch_size_mean: float | None = None  # batched engine: sequences per step, time-weighted
    kv_use_mean: float | None = None  # batched engine: time-mean share of KV capacity in use


@dataclass(frozen=True)
class ClassMetrics:
    """TTFT of the measured requests of one class of a mixture workload."""

    n_requests: int
    ttft_mean_s: float
    ttft_p50_s: float
    ttft_p90_s: float
    ttft_p99_s: float


@dataclass(frozen=True)
class ReplicationResult:
    """The compact result of one replication of one architecture."""

    n_requests: int
    ttft_mean_s: float
    ttft_p50_s: float
    ttft_p90_s: float
    ttft_p99_s: float
    ttft_max_s: float
    e2e_mean_s: float
    e2e_p99_s: float
    pools: dict[str, PoolMetrics] = field(default_factory=dict)
    # TPOT = (last token - first token) / (output tokens - 1), over measured requests with at
    # least two output tokens.
    tpot_mean_s: float = float("nan")
    tpot_p50_s: float = float("nan")
    tpot_p90_s: float = float("nan")
    tpot_p99_s: float = float("nan")
    slo_attainment: float | None = None  # share of measured requests meeting the spec's `slo`
    preemptions: int | None = None  # batched engine: sequences preempted (all requests)
    # mixture workloads only: class name -> its TTFT; the classes' n_requests add up to n_requests
    classes: dict[str, ClassMetrics] = field(default_factory=dict)

    def flat(self) -> dict[str, float]:
        """Metric name -> value, with pool metrics as `<metric>_<pool>` (the column names)."""
        out: dict[str, float] = {
            "n_requests": self.n_requests,
            "ttft_mean_s": self.ttft_mean_s,
            "ttft_p50_s": self.ttft_p50_s,
            "ttft_p90_s": self.ttft_p90_s,
            "ttft_p99_s": self.ttft_p99_s,
            "ttft_max_s": self.ttft_max_s,
            "e2e_mean_s": self.e2e_mean_s,
            "e2e_p99_s": self.e2e_p99_s,
            "tpot_mean_s": self.tpot_mean_s,
            "tpot_p50_s": self.tpot_p50_s,
            "tpot_p90_s": self.tpot_p90_s,
            "tpot_p99_s": self.tpot_p99_s,
        }
        if self.slo_attainment is not None:
            out["slo_attainment"] = self.slo_attainment
        if self.preemptions is not None:
            out["preemptions"] = self.preemptions
        for name, pool in self.pools.items():
            out[f"queue_wait_mean_s_{name}"] = pool.queue_wait_mean_s
            out[f"utilization_{name}"] = pool.utilization
            out[f"offered_load_{name}"] = pool.offered_load
            if pool.batch_size_mean is not None:
                out[f"batch_size_mean_{name}"] = pool.batch_size_mean
            if pool.kv_use_mean is not None:
                out[f"kv_use_mean_{name}"] = pool.kv_use_mean
        for name, cls in self.classes.items():  # e.g. ttft_p99_s_class_chat
            for metric, value in vars(cls).items():
                out[f"{metric}_class_{name}"] = value
        return out


def offered_load(
    workload: Workload,
    gpu: Gpu | dict[str, Gpu],
    arch: Architecture,
    duration_s: float | None = None,
) -> dict[str, float]:
    """Pool name -> arrival rate x mean service time / GPUs, from the spec alone.

    `gpu` holds the token rates of one GPU: one for every pool, or pool name -> rates when the
    pools run on different GPUs. Rate and mean sizes are the exact expectations of what is
    generated (`expected_means`): for a trace window or replay they depend on the run length, so
    pass `duration_s` (without it the whole trace's long-run figures are used).
    """
    means = expected_means(workload, duration_s)
    rate = means.rate_rps
    pools = gpu if isinstance(gpu, dict) else None
    first = pools.get("prefill", pools.get("gpu")) if pools else gpu
    second = pools.get("decode", pools.get("gpu")) if pools else gpu
    prefill_s = means.prompt_tokens / first.prefill_tokens_per_s
    decode_s = means.output_tokens / second.decode_tokens_per_s
    if isinstance(arch, Monolithic):
        return {"gpu": rate * (prefill_s + decode_s) / arch.gpus}
    if isinstance(arch, Disaggregated):
        return {
            "prefill": rate * prefill_s / arch.prefill_gpus,
            "decode": rate * decode_s / arch.decode_gpus,
        }
    raise TypeError(f"unknown architecture {arch!r}")  # pragma: no cover


def _quantile(x: np.ndarray, q: float) -> float:
    return float(np.quantile(x, q)) if x.size else float("nan")


def _quantiles_in_place(x: np.ndarray) -> dict[str, float]:
    """numpy's default (linear) P50, P90, P99 of `x` from one partition; reorders `x`.

    The same values as one `_quantile(x, q)` per q (order statistics do not depend on which are
    asked for together), at about a third of the cost and without a copy: quantiles are
    summarize's dominant cost on long runs.
    """
    if not x.size:
        return {name: float("nan") for name in QUANTILES}
    values = np.quantile(x, list(QUANTILES.values()), overwrite_input=True)
    return {name: float(v) for name, v in zip(QUANTILES, values, strict=True)}


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else float("nan")


def measured_mask(requests: Requests, warmup_s: float) -> np.ndarray:
    """Which requests are measured: those arriving at or after the warm-up."""
    return requests.arrival_s >= warmup_s


def tpot_s(requests: Requests, trace: Timeline) -> np.ndarray:
    """Per request (last token - first token) / (output tokens - 1); nan with one output token."""
    steps = requests.output_tokens.astype(float) - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(steps > 0, (trace.done_s - trace.first_token_s) / steps, np.nan)


def slo_met(ttft: np.ndarray, tpot: np.ndarray, slo: Slo) -> np.ndarray:
    """Which requests meet the SLO: TTFT <= ttft_s and TPOT <= tpot_s (no TPOT: that half met)."""
    ok = np.ones(ttft.shape, dtype=bool)
    if slo.ttft_s is not None:
        ok &= ttft <= slo.ttft_s
    if slo.tpot_s is not None:
        ok &= np.isnan(tpot) | (tpot <= slo.tpot_s)
    return ok


def class_metrics(
    requests: Requests, measured: np.ndarray, ttft: np.ndarray
) -> dict[str, ClassMetrics]:
    """Per-class TTFT of a mixture (empty for a single-class workload); `ttft` is of measured."""
    if len(requests.class_names) < 2:
        return {}
    ids = requests.class_id[measured]
    out = {}
    for i, name in enumerate(requests.class_names):
        mine = ttft[ids == i]
        out[name] = ClassMetrics(
            n_requests=int(mine.size),
            ttft_mean_s=_mean(mine),
            ttft_p50_s=_quantile(mine, QUANTILES["p50"]),
            ttft_p90_s=_quantile(mine, QUANTILES["p90"]),
            ttft_p99_s=_quantile(mine, QUANTILES["p99"]),
        )
    return out


def summarize(
    requests: Requests,
    trace: Timeline,
    warmup_s: float,
    load: dict[str, float],
    slo: Slo | None = None,
) -> ReplicationResult:
    """The replication's metrics from per-request times."""
    measured = measured_mask(requests, warmup_s)
    arrival = requests.arrival_s[measured]
    ttft = trace.first_token_s[measured] - arrival
    e2e = trace.done_s[measured] - arrival
    tpot = tpot_s(requests, trace)[measured]
    has_tpot = tpot[~np.isnan(tpot)]
    end_s = float(trace.done_s.max()) if trace.done_s.size else 0.0
    serving = trace.serving
    pools = {
        name: PoolMetrics(
            queue_wait_mean_s=_mean(pool.wait_s[measured]),
            utilization=float(pool.busy_s.sum() / (pool.gpus * end_s)) if end_s > 0 else 0.0,
            offered_load=load[name],
            batch_size_mean=serving.batch_size_mean[name] if serving else None,
            kv_use_mean=serving.kv_use_mean[name] if serving else None,
        )
        for name, pool in trace.pools.items()
    }
    # Everything that depends on element order first: the quantiles below reorder in place
    # (ttft, e2e and has_tpot are this function's own arrays).
    ttft_mean_s, e2e_mean_s, tpot_mean_s = _mean(ttft), _mean(e2e), _mean(has_tpot)
    ttft_max_s = float(ttft.max()) if ttft.size else float("nan")
    slo_attainment = _mean(slo_met(ttft, tpot, slo).astype(float)) if slo else None
    classes = class_metrics(requests, measured, ttft)
    ttft_q = _quantiles_in_place(ttft)
    tpot_q = _quantiles_in_place(has_tpot)
    e2e_p99_s = (
        float(np.quantile(e2e, QUANTILES["p99"], overwrite_input=True)) if e2e.size else np.nan
    )
    return ReplicationResult(
        n_requests=int(measured.sum()),
        ttft_mean_s=ttft_mean_s,
        ttft_p50_s=ttft_q["p50"],
        ttft_p90_s=ttft_q["p90"],
        ttft_p99_s=ttft_q["p99"],
        ttft_max_s=ttft_max_s,
        e2e_mean_s=e2e_mean_s,
        e2e_p99_s=e2e_p99_s,
        pools=pools,
        tpot_mean_s=tpot_mean_s,
        tpot_p50_s=tpot_q["p50"],
        tpot_p90_s=tpot_q["p90"],
        tpot_p99_s=tpot_q["p99"],
        slo_attainment=slo_attainment,
        preemptions=serving.preemptions if serving else None,
        classes=classes,
    )
