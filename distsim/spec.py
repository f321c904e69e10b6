"""The study spec: what a user writes in YAML, validated at the edge.

A *study* is one YAML file. Its simulated part — seed, run length, workload, GPU speeds and the
architectures — is a `Scenario`; study-level settings (name, baseline, replications, confidence,
sweep) say how many scenarios to run and how to compare them. Every model forbids unknown fields,
so a misspelt key is an error naming the key instead of a silently ignored setting.

    name: default
    seed: 2026
    duration_s: 300
    warmup_s: 30
    workload:
      arrival: {process: poisson, rate_rps: 2.0}
      prompt_tokens: {dist: lognormal, mu: 6.0, sigma: 0.9, min: 8}
      output_tokens: {dist: lognormal, mu: 6.0, sigma: 1.1, min: 16}
    gpu: {prefill_tokens_per_s: 8000, decode_tokens_per_s: 2000}
    architectures:
      monolithic: {kind: monolithic, gpus: 4}
      disaggregated: {kind: disaggregated, prefill_gpus: 2, decode_gpus: 2}
    baseline: monolithic
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from distsim.errors import SpecError

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+$", min_length=1, max_length=64)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
PositiveInt = Annotated[int, Field(gt=0)]

# The largest token count a draw may take before rounding: beyond 2**53 a float no longer holds
# every integer. No realistic distribution gets there; `max` is the documented way to cap sizes.
TOKEN_CEILING = 2**53


class StrictModel(BaseModel):
    """Base of every spec model: unknown fields, NaN and infinity are errors; models are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# ---------------------------------------------------------------- token-count distributions


class _TokenDistBase(StrictModel):
    """A draw is rounded to the nearest integer, then clamped to [min, max]."""

    min: PositiveInt = 1
    max: PositiveInt | None = None

    @model_validator(mode="after")
    def _min_le_max(self) -> _TokenDistBase:
        if self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class Lognormal(_TokenDistBase):
    """exp(N(mu, sigma^2)) tokens, before rounding and clamping."""

    dist: Literal["lognormal"]
    mu: float = Field(ge=-50, le=50)
    sigma: PositiveFloat = Field(le=10)


class Exponential(_TokenDistBase):
    """Exponential with the given mean, before rounding and clamping."""

    dist: Literal["exponential"]
    mean: PositiveFloat = Field(le=1e12)


class Constant(_TokenDistBase):
    """Always `value` tokens (rounded and clamped like any other draw)."""

    dist: Literal["constant"]
    value: PositiveFloat = Field(le=1e12)


class Uniform(_TokenDistBase):
    """Uniform on [low, high), before rounding and clamping."""

    dist: Literal["uniform"]
    low: NonNegativeFloat
    high: PositiveFloat = Field(le=1e12)

    @model_validator(mode="after")
    def _low_le_high(self) -> Uniform:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is greater than high ({self.high})")
        return self


TokenDist = Annotated[
    Union[Lognormal, Exponential, Constant, Uniform], Field(discriminator="dist")  # noqa: UP007
]

# ---------------------------------------------------------------- arrivals


class PoissonArrival(StrictModel):
    """Exponential inter-arrival gaps at `rate_rps` requests per second."""

    process: Literal["poisson"]
    rate_rps: PositiveFloat = Field(le=1e7)


class GammaArrival(StrictModel):
    """A renewal process with gamma gaps: mean 1/rate_rps, coefficient of variation `cv`.

    cv = 1 is Poisson; cv > 1 is burstier, cv < 1 more regular.
    """

    process: Literal["gamma"]
    rate_rps: PositiveFloat = Field(le=1e7)
    cv: PositiveFloat = Field(le=100)


Arrival = Annotated[Union[PoissonArrival, GammaArrival], Field(discriminator="process")]  # noqa: UP007


class Workload(StrictModel):
    """Who arrives when, with how many prompt tokens and how many tokens to generate."""

    arrival: Arrival
    prompt_tokens: TokenDist
    output_tokens: TokenDist


class Gpu(StrictModel):
    """Token rates of one GPU in the exclusive (seed) engine."""

    prefill_tokens_per_s: PositiveFloat = Field(le=1e12)
    decode_tokens_per_s: PositiveFloat = Field(le=1e12)


# ---------------------------------------------------------------- architectures


class Monolithic(StrictModel):
    """`gpus` GPUs behind one FCFS queue; a request holds one GPU through prefill and decode."""

    kind: Literal["monolithic"]
    gpus: PositiveInt = Field(le=100_000)

    def pools(self) -> dict[str, int]:
        return {"gpu": self.gpus}


class Disaggregated(StrictModel):
    """A prefill pool and a decode pool, each FCFS.

    `first_token: decode` (the seed's semantics): the first token appears one decode-token time
    after decode starts, so TTFT includes the wait for a decode GPU. `first_token: prefill`
    (DistServe's): it appears when prefill ends.
    """

    kind: Literal["disaggregated"]
    prefill_gpus: PositiveInt = Field(le=100_000)
    decode_gpus: PositiveInt = Field(le=100_000)
    first_token: Literal["decode", "prefill"] = "decode"

    def pools(self) -> dict[str, int]:
        return {"prefill": self.prefill_gpus, "decode": self.decode_gpus}


Architecture = Annotated[Union[Monolithic, Disaggregated], Field(discriminator="kind")]  # noqa: UP007

# ---------------------------------------------------------------- scenario and study

# Fields of a study that change what is simulated; everything else is study-level.
SCENARIO_FIELDS = ("seed", "duration_s", "warmup_s", "workload", "gpu", "architectures")


class Scenario(StrictModel):
    """Everything one replication needs: the simulated part of a study, sweep applied."""

    seed: int = Field(ge=0, lt=2**63)
    duration_s: PositiveFloat = Field(le=1e9)
    warmup_s: NonNegativeFloat = 0.0
    workload: Workload
    gpu: Gpu
    architectures: dict[Name, Architecture] = Field(min_length=1)

    @model_validator(mode="after")
    def _warmup_before_end(self) -> Scenario:
        if self.warmup_s >= self.duration_s:
            raise ValueError(
                f"warmup_s ({self.warmup_s:g}) must be less than duration_s ({self.duration_s:g})"
            )
        return self


class Study(Scenario):
    """A whole study file: the scenario plus how to replicate, sweep and compare it."""

    name: Name
    baseline: Name | None = None
    replications: int = Field(30, ge=2, le=1_000_000)
    confidence: float = Field(0.95, gt=0, lt=1)
    sweep: dict[str, list[Any]] = Field(default_factory=dict)
    scenarios: list[dict[str, Any]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _baseline_known(self) -> Study:
        if self.baseline is None:
            object.__setattr__(self, "baseline", next(iter(self.architectures)))
        elif self.baseline not in self.architectures:
            known = ", ".join(self.architectures)
            raise ValueError(
                f"baseline: '{self.baseline}' is not among the architectures ({known})"
            )
        for path, values in self.sweep.items():
            if not values:
                raise ValueError(f"sweep.{path}: needs at least one value")
        return self

    def scenario(self) -> Scenario:
        """The study's own scenario, without sweep or explicit points applied."""
        return Scenario.model_validate(self.model_dump(include=set(SCENARIO_FIELDS)))


# ---------------------------------------------------------------- loading and error messages

_TAGS = {
    "lognormal", "exponential", "constant", "uniform", "poisson", "gamma",
    "monolithic", "disaggregated",
}  # fmt: skip


def _loc(error: dict[str, Any]) -> str:
    """Dotted field path of a pydantic error, without the union tag pydantic inserts."""
    loc = [str(part) for part in error["loc"]]
    if not str(error["type"]).startswith("union_tag"):
        for i in range(len(loc) - 1, -1, -1):
            if loc[i] in _TAGS and i > 0:
                del loc[i]
                break
    return ".".join(loc)


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One line: `field.path: message` for the first problem, and how many more there are."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    path = _loc(first)
    where = ".".join(p for p in (prefix, path) if p) or "spec"
    msg = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown field (check the spelling)"
    elif first["type"] == "missing":
        msg = "required field is missing"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{where}: {msg}{more}"


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping at the top of a YAML file, read with the safe loader."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"{p}: no such spec file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{p}: invalid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{p}: cannot read: {exc}") from None
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise SpecError(f"{p}: the spec must be a YAML mapping of fields, not {kind}")
    return data


def parse_value(text: str) -> Any:
    """A `--set PATH=VALUE` value, read as a YAML scalar or flow collection."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set `a.b.c` in a nested dict in place; every segment must already exist."""
    parts = path.split(".")
    node: Any = data
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(parts[: i + 1])
            raise SpecError(f"{path}: no such field in the spec ('{where}' does not exist)")
        if i == len(parts) - 1:
            node[part] = value
        else:
            node = node[part]


def validate_study(data: dict[str, Any]) -> Study:
    """A validated `Study` from a plain mapping, or a one-line `SpecError`."""
    try:
        return Study.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc)) from None


def apply_overrides(study: Study, overrides: dict[str, Any]) -> Study:
    """The study with dotted-path overrides applied (paths must exist), validated again."""
    data = study.model_dump(mode="python")
    data = copy.deepcopy(data)
    for path, value in overrides.items():
        set_path(data, path, value)
    return validate_study(data)


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """`["a.b=1", ...]` from the command line as a path -> value mapping."""
    out: dict[str, Any] = {}
    for item in items or []:
        path, sep, text = item.partition("=")
        if not sep or not path.strip():
            raise SpecError(f"--set {item}: expected PATH=VALUE, e.g. workload.arrival.rate_rps=4")
        out[path.strip()] = parse_value(text)
    return out


def load_study(path: str | Path, overrides: dict[str, Any] | None = None) -> Study:
    """Read, validate and override a study file; every problem is a one-line `SpecError`."""
    study = validate_study(read_yaml(path))
    return apply_overrides(study, overrides) if overrides else study
