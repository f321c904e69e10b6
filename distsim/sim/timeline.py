"""What an engine returns: per-request timestamps and per-pool occupancy, as arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distsim.spec.study import Gpu
from distsim.workload.generate import Requests


@dataclass(frozen=True)
class PoolTimeline:
    """One GPU pool: how long each request queued for it and held one of its GPUs."""

    gpus: int
    wait_s: np.ndarray  # per request, time from joining the pool's queue to getting a GPU
    busy_s: np.ndarray  # per request, GPU-seconds held in this pool


@dataclass(frozen=True)
class TransferLog:
    """KV transfers of the batched engine (disaggregated), one row per request, by request."""

    request: np.ndarray  # int64
    link: np.ndarray  # int64: the decode instance whose link carried it
    start_s: np.ndarray
    end_s: np.ndarray


@dataclass(frozen=True)
class ServingStats:
    """What only the batched engine knows: preemptions, batch sizes, KV use, transfers."""

    preemptions: int
    recomputed_tokens: int
    batch_size_mean: dict[str, float]  # pool -> sequences per step, weighted by step time
    kv_use_mean: dict[str, float]  # pool -> time-mean share of KV capacity in use (nan: unlimited)
    transfers: TransferLog


@dataclass(frozen=True)
class Timeline:
    """Absolute times (seconds from 0) of each request's first token and completion."""

    first_token_s: np.ndarray
    done_s: np.ndarray
    pools: dict[str, PoolTimeline]
    serving: ServingStats | None = None  # batched engine only


@dataclass(frozen=True)
class ServiceTimes:
    """Exclusive-engine service times: a GPU works on one request at fixed token rates."""

    prefill_s: np.ndarray
    decode_s: np.ndarray
    decode_token_s: float  # time to generate one output token

    @classmethod
    def of(cls, requests: Requests, gpu: Gpu, decode_gpu: Gpu | None = None) -> ServiceTimes:
        """Prefill at `gpu`'s rate; decode at `decode_gpu`'s (a disaggregated architecture's
        decode pool on its own GPU type), or `gpu`'s when None."""
        dec = gpu if decode_gpu is None else decode_gpu
        return cls(
            prefill_s=requests.prompt_tokens / gpu.prefill_tokens_per_s,
            decode_s=requests.output_tokens / dec.decode_tokens_per_s,
            decode_token_s=1.0 / dec.decode_tokens_per_s,
        )
