"""The `workload` section of a study: arrival processes, token-size distributions, traces, mixes.

    workload:
      arrival: {process: poisson, rate_rps: 2.0}       # or gamma (+ cv)
      prompt_tokens: {dist: lognormal, mu: 6.0, sigma: 0.9, min: 8}
      output_tokens: {dist: lognormal, mu: 6.0, sigma: 1.1, min: 16}
      # or mix: [{name, weight, prompt_tokens, output_tokens}, ...], or trace: {path, mode}

The models only describe; `distsim.workload` generates the requests. Data files a model names
(traces, empirical columns) are read here once, so a missing or malformed file is a spec error.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Annotated, Literal, Union

from pydantic import ConfigDict, Field, field_validator, model_validator

from distsim.spec.base import Name, NonNegativeFloat, PositiveFloat, PositiveInt, StrictModel
from distsim.workload.trace_files import load_column, load_trace

# The largest token count a draw may take before rounding: beyond 2**53 a float no longer holds
# every integer. No realistic distribution gets there; `max` is the documented way to cap sizes.
TOKEN_CEILING = 2**53


# ---------------------------------------------------------------- token-count distributions


class _TokenDistBase(StrictModel):
    """A draw is rounded to the nearest integer, then clamped to [min, max]."""

    min: PositiveInt = Field(1, le=TOKEN_CEILING, description="Smallest count (after rounding).")
    max: PositiveInt | None = Field(
        None, le=TOKEN_CEILING, description="Largest count (after rounding); none by default."
    )

    @model_validator(mode="after")
    def _min_le_max(self) -> _TokenDistBase:
        if self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


# z such that P(N(0, 1) <= z) = 0.9: sigma = ln(p90 / median) / z.
_Z90 = NormalDist().inv_cdf(0.9)
_LOGNORMAL_PARAMETERS = {"mu + sigma": ("mu", "sigma"), "mean + cv": ("mean", "cv")}
_LOGNORMAL_PARAMETERS["median + p90"] = ("median", "p90")


class Lognormal(_TokenDistBase):
    """exp(N(mu, sigma^2)) tokens, before rounding and clamping.

    Give exactly one pair: `mu` and `sigma` (of the underlying normal), `mean` and `cv` (of the
    tokens), or `median` and `p90` (of the tokens). The last two are converted to mu and sigma
    exactly, and only mu and sigma are stored, so a study written either way is the same scenario
    with the same id: mean m and cv c give sigma^2 = ln(1 + c^2), mu = ln m - sigma^2 / 2; median
    M and p90 P give mu = ln M, sigma = ln(P / M) / z_0.9.
    """

    # Editors: one of the three pairs is required (the validator below says which is missing).
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [{"required": list(pair)} for pair in _LOGNORMAL_PARAMETERS.values()]
        }
    )

    dist: Literal["lognormal"] = Field(description="Selects this distribution.")
    mu: float | None = Field(
        None, ge=-50, le=50, description="Mean of the underlying normal (log tokens)."
    )
    sigma: PositiveFloat | None = Field(
        None, le=10, description="Standard deviation of the underlying normal (log tokens)."
    )
    mean: PositiveFloat | None = Field(
        None, le=1e12, exclude=True, description="Mean tokens (with cv, instead of mu and sigma)."
    )
    cv: PositiveFloat | None = Field(
        None,
        le=100,
        exclude=True,
        description="Coefficient of variation: standard deviation / mean (with mean).",
    )
    median: PositiveFloat | None = Field(
        None, le=1e12, exclude=True, description="Median tokens (with p90; instead of mu, sigma)."
    )
    p90: PositiveFloat | None = Field(
        None, le=1e12, exclude=True, description="90th percentile of tokens, above the median."
    )

    @model_validator(mode="after")
    def _to_mu_sigma(self) -> Lognormal:
        given = [
            name
            for name, keys in _LOGNORMAL_PARAMETERS.items()
            if any(getattr(self, k) is not None for k in keys)
        ]
        if len(given) != 1:
            got = f" (got {' and '.join(given)})" if given else ""
            raise ValueError(f"give exactly one of mu + sigma, mean + cv, median + p90{got}")
        first, second = _LOGNORMAL_PARAMETERS[given[0]]
        a, b = getattr(self, first), getattr(self, second)
        if a is None or b is None:
            raise ValueError(f"{first if a is None else second} is missing (give {given[0]})")
        if given[0] == "mean + cv":
            var = math.log1p(b * b)
            mu, sigma = math.log(a) - var / 2, math.sqrt(var)
        elif given[0] == "median + p90":
            if b <= a:
                raise ValueError(f"p90 ({b:g}) must be greater than median ({a:g})")
            mu, sigma = math.log(a), math.log(b / a) / _Z90
        else:
            return self
        if not -50 <= mu <= 50 or not 0 < sigma <= 10:
            raise ValueError(
                f"{given[0]} give mu = {mu:g}, sigma = {sigma:g}: outside mu in [-50, 50], "
                "sigma in (0, 10]"
            )
        object.__setattr__(self, "mu", mu)
        object.__setattr__(self, "sigma", sigma)
        return self


def lognormal_pair(mu: float, sigma: float, key: str) -> dict[str, float]:
    """The friendlier pair holding `key` (`mean` and `cv`, or `median` and `p90`) of the lognormal
    with these mu and sigma: how a sweep or `--set` of one of them keeps the other as it was."""
    if key in ("mean", "cv"):
        var = sigma * sigma
        return {"mean": math.exp(mu + var / 2), "cv": math.sqrt(math.expm1(var))}
    if key in ("median", "p90"):
        return {"median": math.exp(mu), "p90": math.exp(mu + sigma * _Z90)}
    raise KeyError(key)


class Exponential(_TokenDistBase):
    """Exponential with the given mean, before rounding and clamping."""

    dist: Literal["exponential"] = Field(description="Selects this distribution.")
    mean: PositiveFloat = Field(le=1e12, description="Mean tokens before rounding and clamping.")


class Constant(_TokenDistBase):
    """Always `value` tokens (rounded and clamped like any other draw)."""

    dist: Literal["constant"] = Field(description="Selects this distribution.")
    value: PositiveFloat = Field(le=1e12, description="The token count.")


class Uniform(_TokenDistBase):
    """Uniform on [low, high), before rounding and clamping."""

    dist: Literal["uniform"] = Field(description="Selects this distribution.")
    low: NonNegativeFloat = Field(description="Lower end (included).")
    high: PositiveFloat = Field(le=1e12, description="Upper end (excluded); at least low.")

    @model_validator(mode="after")
    def _low_le_high(self) -> Uniform:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is greater than high ({self.high})")
        return self


class Empirical(_TokenDistBase):
    """Token counts drawn uniformly (with replacement) from one column of a CSV file, then clamped.

    `path` is relative to the spec file. Rows with an empty or non-positive count are skipped and
    counted (`distsim workload` shows how many); other non-numbers are errors.
    """

    dist: Literal["empirical"] = Field(description="Selects this distribution.")
    path: str = Field(min_length=1, description="CSV file, relative to the spec file.")
    column: str = Field(min_length=1, description="Column of token counts (by header name).")

    @model_validator(mode="after")
    def _readable(self) -> Empirical:
        load_column(self.path, self.column)  # DataError is a ValueError: reported at this field
        return self


TokenDist = Annotated[
    Union[Lognormal, Exponential, Constant, Uniform, Empirical],  # noqa: UP007
    Field(discriminator="dist"),
]

# ---------------------------------------------------------------- arrivals


class PoissonArrival(StrictModel):
    """Exponential inter-arrival gaps at `rate_rps` requests per second.

    `rate_rps` may be left out only with a `resample` trace, which then supplies its mean rate.
    """

    process: Literal["poisson"] = Field(description="Selects Poisson arrivals.")
    rate_rps: PositiveFloat | None = Field(
        None, le=1e7, description="Mean arrival rate, requests per second."
    )


class GammaArrival(StrictModel):
    """A renewal process with gamma gaps: mean 1/rate_rps, coefficient of variation `cv`.

    cv = 1 is Poisson; cv > 1 is burstier, cv < 1 more regular.
    """

    process: Literal["gamma"] = Field(description="Selects gamma-renewal arrivals.")
    rate_rps: PositiveFloat | None = Field(
        None, le=1e7, description="Mean arrival rate, requests per second."
    )
    cv: PositiveFloat = Field(
        le=100, description="Coefficient of variation of the gaps (1: Poisson; > 1: burstier)."
    )


Arrival = Annotated[Union[PoissonArrival, GammaArrival], Field(discriminator="process")]  # noqa: UP007


class TraceWorkload(StrictModel):
    """Requests taken from a recorded trace (CSV; see `distsim.workload.trace_files` for the
    schemas).

    - `window` (default): each replication takes a window of duration_s x rate_scale seconds of
      trace, placed uniformly at random (from the replication's arrivals stream), arrivals and
      sizes as recorded, shifted to start at 0: real burstiness, replications that differ.
    - `resample`: (prompt, output) pairs drawn from the trace; arrivals from `workload.arrival`
      (Poisson if absent) at its `rate_rps`, or the trace's mean rate if that is left out,
      multiplied by rate_scale.
    - `replay`: the trace from its start, as recorded; every replication is the same.
    - `rate_scale` compresses (> 1) or stretches (< 1) time: 2.0 is twice the rate, same burst
      shape, same sizes.

    `path` is relative to the spec file.
    """

    path: str = Field(min_length=1, description="Trace CSV file, relative to the spec file.")
    mode: Literal["window", "resample", "replay"] = Field(
        "window",
        description="window: a random window per replication; resample: sizes drawn from the "
        "trace, arrivals from workload.arrival; replay: the trace from its start.",
    )
    rate_scale: PositiveFloat = Field(
        1.0, le=1e6, description="Time compression: 2.0 replays the trace at twice its rate."
    )

    @field_validator("path")
    @classmethod
    def _readable(cls, path: str) -> str:
        load_trace(path)  # DataError is a ValueError: reported as workload.trace.path
        return path


class MixClass(StrictModel):
    """One request class of a mixture: its share of arrivals and its own size distributions."""

    name: Name = Field(description="Class name (metrics get a `_class_<name>` suffix).")
    weight: PositiveFloat = Field(
        le=1e12, description="Relative share of arrivals (weights need not sum to 1)."
    )
    prompt_tokens: TokenDist = Field(description="Prompt sizes of this class.")
    output_tokens: TokenDist = Field(description="Output sizes of this class.")


class Workload(StrictModel):
    """Who arrives when, with how many prompt tokens and how many tokens to generate.

    Sizes come from exactly one source: `prompt_tokens` + `output_tokens`, a `mix` of request
    classes (sharing `arrival`), or a `trace` (which also gives the arrivals unless its mode is
    `resample`).
    """

    arrival: Arrival | None = Field(
        None, description="The arrival process (required unless a trace gives the arrivals)."
    )
    prompt_tokens: TokenDist | None = Field(None, description="Prompt sizes, tokens.")
    output_tokens: TokenDist | None = Field(
        None, description="Output sizes: tokens to generate, the first included."
    )
    mix: list[MixClass] | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description="Request classes with their own sizes, instead of prompt_tokens/output_tokens.",
    )
    trace: TraceWorkload | None = Field(None, description="A recorded trace (sizes and arrivals).")

    @model_validator(mode="after")
    def _one_source(self) -> Workload:
        sizes = self.prompt_tokens is not None or self.output_tokens is not None
        if self.trace is not None:
            if sizes or self.mix is not None:
                given = "mix" if self.mix is not None else "prompt_tokens/output_tokens"
                raise ValueError(
                    f"{given} cannot be combined with trace (sizes come from the trace)"
                )
            if self.trace.mode != "resample" and self.arrival is not None:
                raise ValueError(
                    f"arrival cannot be combined with trace mode '{self.trace.mode}' (arrivals "
                    "come from the trace; use mode: resample to draw them from a process)"
                )
            return self
        if self.arrival is None:
            raise ValueError("arrival is missing (required unless a trace gives the arrivals)")
        if self.arrival.rate_rps is None:
            raise ValueError("arrival.rate_rps is missing (only a resample trace can supply it)")
        if self.mix is not None:
            if sizes:
                raise ValueError(
                    "prompt_tokens/output_tokens cannot be combined with mix "
                    "(each class has its own)"
                )
            names = [c.name for c in self.mix]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"mix: class name(s) {', '.join(dup)} used more than once")
            return self
        for name in ("prompt_tokens", "output_tokens"):
            if getattr(self, name) is None:
                raise ValueError(f"{name} is missing (or give a mix or a trace)")
        return self
