"""Spec sections for choosing a deployment: `select` and the `candidates` generator.

    candidates: {disaggregated_splits: {gpus: 8, monolithic: true}}   # d17, d26, ..., d71, m8
    select:
      objective: e2e_mean_s        # a per-replication metric, goodput_rps_per_gpu or
                                   # goodput_requests_per_usd
      goal: minimize               # default: the objective's natural direction
      indifference: 0.02           # relative: within 2% of the best counts as equally good
      subject_to:
        - {metric: slo_attainment, at_least: 0.9}
        - {metric: ttft_p99_s, at_most: 0.5}

`OBJECTIVES` lists what may be selected on, one line each: a per-replication metric (a column of
every replication's row) or a searched quantity (a rate found per candidate by
`distsim.stats.goodput_search`, divided by a per-candidate figure such as its GPU count).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from distsim.spec.base import StrictModel as _Strict


def _gpus(scenario: Any, arch: Any) -> float:
    return float(sum(arch.pools().values()))


def _requests_per_usd(scenario: Any, arch: Any) -> float:
    """Requests per dollar of one req/s/GPU of goodput: GPUs x 3600 s / (USD per hour)."""
    from distsim.errors import SpecError
    from distsim.spec.serving import economics

    cost = economics(scenario, arch).cost_usd_per_hour
    if cost is None or cost <= 0:
        raise SpecError(
            "select.objective: goodput_requests_per_usd needs a price: set gpu.usd_per_hour "
            "(or use a GPU preset that has one) for every pool"
        )
    return _gpus(scenario, arch) * 3600.0 / cost


@dataclass(frozen=True)
class Objective:
    """What `select.objective` may name. `per` is None for a per-replication metric; for a
    searched goodput it maps (scenario, architecture) to the divisor of the candidate's goodput
    (its GPUs; a goodput per dollar would divide by its dollars per second)."""

    label: str
    unit: str
    goal: Literal["minimize", "maximize"]
    per: Callable[[Any, Any], float] | None = None
    # A searched objective reported in other units than rate per `per`: (scenario, architecture)
    # -> factor from the searched rate per `per` to the objective (e.g. req/s/GPU -> req/USD).
    scale: Callable[[Any, Any], float] | None = None


OBJECTIVES: dict[str, Objective] = {
    "e2e_mean_s": Objective("mean E2E", "s", "minimize"),
    "e2e_p99_s": Objective("P99 E2E (per run)", "s", "minimize"),
    "ttft_mean_s": Objective("mean TTFT", "s", "minimize"),
    "ttft_p50_s": Objective("P50 TTFT (per run)", "s", "minimize"),
    "ttft_p90_s": Objective("P90 TTFT (per run)", "s", "minimize"),
    "ttft_p99_s": Objective("P99 TTFT (per run)", "s", "minimize"),
    "tpot_mean_s": Objective("mean TPOT", "s", "minimize"),
    "tpot_p99_s": Objective("P99 TPOT (per run)", "s", "minimize"),
    "slo_attainment": Objective("SLO attainment", "", "maximize"),
    "goodput_rps_per_gpu": Objective("goodput per GPU", "req/s/GPU", "maximize", per=_gpus),
    "goodput_requests_per_usd": Objective(
        "goodput per dollar", "req/USD", "maximize", per=_gpus, scale=_requests_per_usd
    ),
}

# Metrics a constraint may bound: every per-replication metric (searched ones are not).
CONSTRAINT_METRICS = tuple(name for name, o in OBJECTIVES.items() if o.per is None)


class SelectConstraint(_Strict):
    """`metric` averaged over replications must be at least / at most a threshold."""

    metric: Literal[CONSTRAINT_METRICS] = Field(  # type: ignore[valid-type]
        description="A per-replication metric; its mean over replications is bounded."
    )
    at_least: float | None = Field(None, description="Feasible when the mean is at least this.")
    at_most: float | None = Field(None, description="Feasible when the mean is at most this.")

    @model_validator(mode="after")
    def _one_bound(self) -> SelectConstraint:
        if (self.at_least is None) == (self.at_most is None):
            raise ValueError("give exactly one of at_least and at_most")
        return self

    @property
    def bound(self) -> Literal["at_least", "at_most"]:
        return "at_least" if self.at_least is not None else "at_most"

    @property
    def threshold(self) -> float:
        return float(self.at_least if self.at_least is not None else self.at_most)  # type: ignore[arg-type]


class GoodputSearchSpec(_Strict):
    """How `goodput_rps_per_gpu` is searched: the arrival rate per GPU is bracketed in
    [low, high] and bisected until the interval's ends are known to `rel_precision`."""

    attainment: float = Field(
        0.9, gt=0, le=1, description="SLO attainment the rate must keep (share of requests)."
    )
    low_rps_per_gpu: float = Field(
        gt=0, le=1e6, description="Lowest arrival rate per GPU searched (should meet the SLO)."
    )
    high_rps_per_gpu: float = Field(
        gt=0, le=1e6, description="Highest arrival rate per GPU searched (should miss it)."
    )
    rel_precision: float = Field(
        0.01, gt=0, le=0.5, description="Bisect until the rate is known to this relative width."
    )

    @model_validator(mode="after")
    def _ordered(self) -> GoodputSearchSpec:
        if self.low_rps_per_gpu >= self.high_rps_per_gpu:
            raise ValueError("low_rps_per_gpu must be below high_rps_per_gpu")
        return self


class Select(_Strict):
    """Choose the best architecture (per scenario) with a probability of correct selection of
    at least the study's `confidence` whenever the best is more than `indifference` ahead."""

    objective: Literal[tuple(OBJECTIVES)] = Field(  # type: ignore[valid-type]
        description=(
            "What is compared: a per-replication metric, goodput_rps_per_gpu or "
            "goodput_requests_per_usd (the searched goodput x GPUs x 3600 / the GPUs' USD per "
            "hour)."
        ),
    )
    goal: Literal["minimize", "maximize"] | None = Field(
        None, description="Direction (default: the objective's natural one)."
    )
    indifference: float = Field(
        0.02, gt=0, le=1, description="Relative: within this factor of the best is as good."
    )
    subject_to: list[SelectConstraint] = Field(
        default_factory=list,
        max_length=20,
        description="Constraints, each decided at the study's confidence.",
    )
    # Looks are fixed by the spec, never by the machine, so a resumed selection retraces them.
    stage_replications: int = Field(
        5, ge=1, le=10_000, description="Replications added to every contender between looks."
    )
    max_replications: int = Field(
        1000, ge=2, le=1_000_000, description="Cap per candidate (the guarantee ends there)."
    )
    goodput: GoodputSearchSpec | None = Field(
        None, description="Search settings of a goodput objective."
    )

    @model_validator(mode="after")
    def _defaults(self) -> Select:
        if self.goal is None:
            object.__setattr__(self, "goal", OBJECTIVES[self.objective].goal)
        if OBJECTIVES[self.objective].per is not None and self.goodput is None:
            raise ValueError(
                f"objective {self.objective} needs select.goodput "
                "(low_rps_per_gpu, high_rps_per_gpu, attainment)"
            )
        return self

    @property
    def searched(self) -> bool:
        return OBJECTIVES[self.objective].per is not None


# ---------------------------------------------------------------- candidates


class DisaggregatedSplits(_Strict):
    """Every prefill + decode split of `gpus` GPUs (named d<p><d>, e.g. d35; d<p>_<d> for more
    than 10 GPUs, e.g. d3_9), for each tensor-parallel degree (suffix _tp<t>), and a monolithic
    m<gpus> if asked. `template` adds fields to every generated architecture (e.g.
    max_batch_size)."""

    gpus: int = Field(ge=2, le=256, description="The GPU budget every split uses.")
    tensor_parallel: list[Annotated[int, Field(ge=1, le=64)]] = Field(
        default_factory=lambda: [1],
        min_length=1,
        description="Tensor-parallel degrees (the same in both pools).",
    )
    monolithic: bool = Field(False, description="Also a monolithic architecture of all GPUs.")
    template: dict[str, Any] = Field(
        default_factory=dict, description="Fields added to every generated architecture."
    )


class Candidates(_Strict):
    """Architectures generated instead of typed out."""

    disaggregated_splits: DisaggregatedSplits = Field(
        description="Every prefill+decode split of a GPU budget."
    )


def _name(p: int, d: int, tp: int, many_tp: bool, wide: bool) -> str:
    core = f"d{p}_{d}" if wide else f"d{p}{d}"
    return f"{core}_tp{tp}" if many_tp else core


def expand_candidates(spec: Candidates) -> dict[str, dict[str, Any]]:
    """Architecture name -> its spec mapping, for every generated candidate."""
    s = spec.disaggregated_splits
    out: dict[str, dict[str, Any]] = {}
    many = len(s.tensor_parallel) > 1
    for tp in s.tensor_parallel:
        for p in range(tp, s.gpus, tp):
            d = s.gpus - p
            if d % tp:
                continue
            arch: dict[str, Any] = {"kind": "disaggregated", "prefill_gpus": p, "decode_gpus": d}
            if tp > 1:
                arch.update(prefill_tensor_parallel=tp, decode_tensor_parallel=tp)
            out[_name(p, d, tp, many, s.gpus > 10)] = {**s.template, **arch}
        if s.monolithic and s.gpus % tp == 0:
            mono: dict[str, Any] = {"kind": "monolithic", "gpus": s.gpus}
            if tp > 1:
                mono["tensor_parallel"] = tp
            keep = {k: v for k, v in s.template.items() if k not in ("first_token", "kv_link_gb_s")}
            out[f"m{s.gpus}_tp{tp}" if many else f"m{s.gpus}"] = {**keep, **mono}
    return out


def with_candidates(data: Any) -> Any:
    """A raw study mapping with `candidates` expanded into `architectures` (explicit
    architectures of the same name win); anything else unchanged."""
    if not isinstance(data, dict) or not isinstance(data.get("candidates"), dict):
        return data
    try:
        spec = Candidates.model_validate(data["candidates"])
    except ValueError:  # reported at its field by the study's own validation
        return data
    generated = expand_candidates(spec)
    explicit = data.get("architectures") or {}
    if not isinstance(explicit, dict):
        return data
    return {**data, "architectures": {**generated, **explicit}}
