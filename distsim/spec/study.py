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
import difflib
import functools
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from distsim.errors import SpecError
from distsim.spec.base import Name, NonNegativeFloat, PositiveFloat, PositiveInt, StrictModel
from distsim.spec.selection import Candidates, Select, with_candidates
from distsim.spec.serving import (
    DisaggregatedServing,
    GoodputSearch,
    Gpu,
    ModelSpec,
    MonolithicServing,
    Slo,
    StepTime,
)

# The workload section's models, importable from here with the rest of the study's models.
from distsim.spec.workload import (  # noqa: F401
    TOKEN_CEILING,
    Arrival,
    Constant,
    Empirical,
    Exponential,
    GammaArrival,
    Lognormal,
    MixClass,
    PoissonArrival,
    TokenDist,
    TraceWorkload,
    Uniform,
    Workload,
    lognormal_pair,
)
from distsim.workload.trace_files import load_trace

# `gpu`, `model`, `step_time`, `slo`, `goodput` and the batched-engine fields of the two
# architectures are defined in distsim.spec.serving (the serving model's own module).


# ---------------------------------------------------------------- architectures


# How a pool hands requests to its instances. `central`: one FCFS queue that any free instance
# serves (the seed's model). The others route each request to one instance when it joins the
# pool, and every instance serves its own FCFS queue: `round_robin` cycles through the instances
# in join order; `random` picks one uniformly from the replication's `routing` stream (the same
# draws for every architecture: common random numbers); `least_loaded` picks the instance with
# the fewest outstanding tokens (routed to it and not finished), ties to the lowest index.
Routing = Literal["central", "random", "round_robin", "least_loaded"]
_ROUTING_HELP = (
    "How each pool hands requests to its instances: central (one FCFS queue, any free instance; "
    "default), round_robin, random (own random stream) or least_loaded (fewest outstanding "
    "tokens, ties to the lowest index), each instance then serving its own FCFS queue."
)
_POOL_GPU_HELP = (
    "This pool's GPU, with the schema of the study's `gpu`; when given it replaces the study's "
    "`gpu` for this pool (token rates, step time, KV capacity, price and power)."
)


class Monolithic(MonolithicServing):
    """`gpus` GPUs behind one FCFS queue; a request holds one GPU through prefill and decode."""

    kind: Literal["monolithic"] = Field(description="Selects one pool doing both phases.")
    gpus: PositiveInt = Field(le=100_000, description="GPUs in the pool.")
    gpu: Gpu | None = Field(None, description=_POOL_GPU_HELP)
    routing: Routing = Field("central", description=_ROUTING_HELP)

    def pool_gpus(self) -> dict[str, Gpu | None]:
        """Pool name -> its own GPU block (None: the study's `gpu`)."""
        return {"gpu": self.gpu}

    def pools(self) -> dict[str, int]:
        return {"gpu": self.gpus}


class Disaggregated(DisaggregatedServing):
    """A prefill pool and a decode pool, each FCFS.

    `first_token` is the study's TTFT definition (`Scenario.first_token`), copied here for the
    engines; written on an architecture it is the old spelling of the study-level setting.
    None (an architecture built directly, outside a study) means `decode`.
    """

    kind: Literal["disaggregated"] = Field(description="Selects separate prefill and decode pools.")
    prefill_gpus: PositiveInt = Field(le=100_000, description="GPUs in the prefill pool.")
    decode_gpus: PositiveInt = Field(le=100_000, description="GPUs in the decode pool.")
    first_token: Literal["decode", "prefill"] | None = Field(
        None,
        description="Old spelling of the study-level first_token (one TTFT definition for every "
        "architecture); the study copies its setting here for the engines.",
    )
    prefill_gpu: Gpu | None = Field(None, description=_POOL_GPU_HELP)
    decode_gpu: Gpu | None = Field(None, description=_POOL_GPU_HELP)
    routing: Routing = Field("central", description=_ROUTING_HELP)

    def pool_gpus(self) -> dict[str, Gpu | None]:
        """Pool name -> its own GPU block (None: the study's `gpu`)."""
        return {"prefill": self.prefill_gpu, "decode": self.decode_gpu}

    def pools(self) -> dict[str, int]:
        return {"prefill": self.prefill_gpus, "decode": self.decode_gpus}


Architecture = Annotated[Union[Monolithic, Disaggregated], Field(discriminator="kind")]  # noqa: UP007
FirstToken = Literal["prefill", "decode"]
# How the report header names each TTFT definition.
FIRST_TOKEN_TEXT = {
    "prefill": "TTFT ends when the prefill ends (first_token: prefill, as vLLM and DistServe)",
    "decode": "TTFT ends at the first decode step (first_token: decode, the seed summary's "
    "definition: disaggregated TTFT includes the wait for a decode slot)",
}

# ---------------------------------------------------------------- scenario and study

# Fields of a study that change what is simulated; everything else is study-level.
SCENARIO_FIELDS = (
    "seed", "duration_s", "warmup_s", "workload", "gpu", "architectures",
    "engine", "model", "step_time", "slo", "first_token",
)  # fmt: skip


class Scenario(StrictModel):
    """Everything one replication needs: the simulated part of a study, sweep applied."""

    seed: int = Field(
        ge=0, lt=2**63, description="Root of every random stream: same seed, same requests."
    )
    duration_s: PositiveFloat = Field(
        le=1e9, description="Simulated time of one replication, seconds (arrivals stop here)."
    )
    # `auto`: `distsim run` resolves it per scenario from a pilot (MSER-5; see
    # distsim.runner.warmup).
    warmup_s: NonNegativeFloat | Literal["auto"] = Field(
        0.0,
        description="Requests arriving before this many seconds are not measured; auto: chosen "
        "per scenario by a pilot (MSER-5).",
    )
    workload: Workload = Field(description="What arrives: arrival process and request sizes.")
    gpu: Gpu = Field(description="One GPU: hardware (preset or figures) or token rates.")
    architectures: dict[Name, Architecture] = Field(
        min_length=1,
        description="The architectures to compare, by name (or generated by `candidates`).",
    )
    engine: Literal["exclusive", "batched"] = Field(
        "exclusive",
        description="exclusive: a request holds a whole GPU; batched: continuous batching with "
        "a KV cache. Every architecture uses it.",
    )
    model: ModelSpec | None = Field(None, description="The served model (batched engine).")
    step_time: StepTime | None = Field(
        None, description="How long a batched step takes (default: roofline)."
    )
    slo: Slo | None = Field(None, description="Latency targets; adds slo_attainment.")
    # One TTFT definition for every architecture. `prefill`: the first token is emitted when the
    # prefill ends, as vLLM and DistServe measure it. `decode` (the seed summary's): a
    # disaggregated architecture's first token comes from its decode pool, one decode-token time
    # after a decode slot is found, so its TTFT includes the wait for one (monolithic: prefill end).
    # Not in dumps (scenario ids): the architectures carry it (see `_one_first_token`).
    first_token: FirstToken = Field(
        "prefill",
        exclude=True,
        description="When TTFT ends, for every architecture: prefill (when the prefill ends, as "
        "vLLM and DistServe measure it) or decode (the seed summary's: a disaggregated first "
        "token comes from the decode pool, after the wait for a decode slot).",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_first_token(cls, data: Any) -> Any:
        """Read the old per-architecture spelling; refuse two definitions in one study."""
        if not isinstance(data, dict) or not isinstance(data.get("architectures"), dict):
            return data
        per_arch = {}
        for name, arch in data["architectures"].items():
            value = arch.get("first_token") if isinstance(arch, dict) else None
            value = getattr(arch, "first_token", None) if not isinstance(arch, dict) else value
            if value in ("prefill", "decode"):  # anything else: the architecture's own error
                per_arch[name] = value
        given = data.get("first_token")
        values = sorted(set(per_arch.values()), key=str)
        clash = len(values) > 1 if given is None else any(v != given for v in values)
        if clash:
            name = next(n for n, v in per_arch.items() if given is None or v != given)
            raise ValueError(
                f"architectures.{name}.first_token: one TTFT definition for every architecture — "
                "set `first_token: prefill` or `first_token: decode` once at the top of the study "
                "(the per-architecture field is its old spelling)"
            )
        if given is None and values:
            data = {**data, "first_token": values[0]}
        return data

    @model_validator(mode="after")
    def _first_token_to_architectures(self) -> Scenario:
        archs = {
            name: arch.model_copy(update={"first_token": self.first_token})
            if isinstance(arch, Disaggregated) and arch.first_token != self.first_token
            else arch
            for name, arch in self.architectures.items()
        }
        object.__setattr__(self, "architectures", archs)  # frozen model, set while validating
        return self

    @field_validator("warmup_s", mode="before")
    @classmethod
    def _warmup_value(cls, value: Any) -> Any:
        """One clear message for a bad warm-up (the union would report each member)."""
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError("expected seconds (a number >= 0) or 'auto'")
        try:
            seconds = float(value)
        except ValueError:
            raise ValueError(f"expected seconds (a number >= 0) or 'auto', not {value!r}") from None
        if not seconds >= 0 or seconds == float("inf"):
            raise ValueError(f"expected seconds (a number >= 0) or 'auto', not {value!r}")
        return seconds

    @model_validator(mode="after")
    def _warmup_before_end(self) -> Scenario:
        if self.warmup_s != "auto" and self.warmup_s >= self.duration_s:
            raise ValueError(
                f"warmup_s ({self.warmup_s:g}) must be less than duration_s ({self.duration_s:g})"
            )
        trace = self.workload.trace
        if trace is not None and trace.mode == "window":
            span_s = load_trace(trace.path).span_s
            needed_s = self.duration_s * trace.rate_scale
            if needed_s > span_s:
                raise ValueError(
                    f"duration_s ({self.duration_s:g}) x workload.trace.rate_scale "
                    f"({trace.rate_scale:g}) = {needed_s:g} s of trace, longer than the trace "
                    f"({span_s:g} s): a window must fit; shorten duration_s"
                )
        return self


PRECISION_METRICS = (
    "ttft_mean_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "e2e_mean_s", "e2e_p99_s",
    "tpot_mean_s", "tpot_p50_s", "tpot_p90_s", "tpot_p99_s",
)  # fmt: skip
PrecisionMetric = Literal[PRECISION_METRICS]  # type: ignore[valid-type]


class Precision(StrictModel):
    """Replicate until every scenario x architecture interval is narrow enough (or a cap).

    After the study's `replications`, further waves (about one replication per CPU each) run
    only for scenarios that still have a cell whose interval half-width on one of `metrics`
    exceeds `rel_half_width` x |estimate|; each such scenario runs every architecture, so
    replications stay paired. A scenario stops at `max_replications` (flag `precision_capped`).
    """

    rel_half_width: float = Field(
        gt=0, le=1, description="Target interval half-width relative to |estimate| (0.05: 5%)."
    )
    metrics: list[PrecisionMetric] = Field(
        default_factory=lambda: ["ttft_mean_s", "ttft_p99_s"],
        min_length=1,
        description="The metrics whose intervals must meet the target.",
    )
    max_replications: int = Field(
        1000, ge=2, le=1_000_000, description="Cap per scenario (at least replications)."
    )

    @field_validator("metrics")
    @classmethod
    def _distinct(cls, metrics: list[str]) -> list[str]:
        dup = sorted({m for m in metrics if metrics.count(m) > 1})
        if dup:
            raise ValueError(f"listed more than once: {', '.join(dup)}")
        return metrics


def _architectures_or_candidates(schema: dict[str, Any]) -> None:
    """For editors: a study gives `architectures`, or `candidates` that generate them."""
    schema["required"] = [name for name in schema.get("required", []) if name != "architectures"]
    schema["anyOf"] = [{"required": ["architectures"]}, {"required": ["candidates"]}]


class Study(Scenario):
    """A whole study file: the scenario plus how to replicate, sweep and compare it."""

    model_config = ConfigDict(json_schema_extra=_architectures_or_candidates)

    name: Name = Field(description="The study's name (default output folder results/<name>).")
    baseline: Name | None = Field(
        None, description="The architecture others are compared with (default: the first)."
    )
    replications: int = Field(
        30, ge=2, le=1_000_000, description="Replications per scenario x architecture."
    )
    confidence: float = Field(0.95, gt=0, lt=1, description="Level of every interval.")
    sweep: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Dotted path -> values; every combination is a scenario.",
    )
    scenarios: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Explicit points (dotted path -> value), each crossed with the sweep.",
    )
    goodput: GoodputSearch | None = Field(
        None, description="Find the highest rate per GPU that meets the SLO (needs slo)."
    )
    # All comparisons of a study form one family; `significant` uses the adjusted p-value.
    multiple_comparisons: Literal["holm", "bonferroni", "bh", "none"] = Field(
        "holm", description="p-value adjustment over all comparisons of the study."
    )
    precision: Precision | None = Field(
        None, description="Replicate until intervals are this narrow, instead of a fixed count."
    )
    # Intervals of pooled quantiles in summary.csv: sectioning on the CDF scale (Woodruff's
    # interval, distsim.stats.intervals) or a BCa bootstrap over replications
    # (distsim.stats.bootstrap).
    quantile_intervals: Literal["sectioning", "bootstrap"] = Field(
        "sectioning",
        description="Intervals of pooled quantiles: sectioning (Woodruff's interval: t over "
        "each replication's share below the pooled quantile) or a BCa bootstrap over "
        "replications (use with >= 20 replications).",
    )
    primary_metrics: list[str] = Field(
        default_factory=list,
        description="Metrics the report's headline speaks of, per scenario (the rest follow in a "
        "table); empty: mean and P99 TTFT, plus mean TPOT and SLO attainment on the batched "
        "engine.",
    )
    # `distsim select`: the candidates are the architectures (see distsim.spec.selection).
    select: Select | None = Field(
        None,
        description="Choose the best architecture with a stated probability (distsim "
        "select; docs/selection.md).",
    )
    candidates: Candidates | None = Field(
        None, description="Generate architectures, e.g. every prefill+decode split of N GPUs."
    )

    @model_validator(mode="before")
    @classmethod
    def _expand_candidates(cls, data: Any) -> Any:
        return with_candidates(data)

    @model_validator(mode="after")
    def _select_needs(self) -> Study:
        s = self.select
        if s is None:
            return self
        uses_slo = [c.metric for c in s.subject_to if c.metric == "slo_attainment"]
        if (s.searched or s.objective == "slo_attainment" or uses_slo) and self.slo is None:
            raise ValueError("select: needs slo (attainment is measured against it)")
        if s.max_replications < self.replications:
            raise ValueError(
                f"select.max_replications: {s.max_replications} is less than replications "
                f"({self.replications}), the first stage"
            )
        if self.precision is not None:
            raise ValueError("select: cannot be combined with precision (select decides itself)")
        if s.searched and self.goodput is not None:
            raise ValueError("select: a goodput objective is searched; remove the goodput grid")
        return self

    @model_validator(mode="after")
    def _precision_cap(self) -> Study:
        p = self.precision
        if p is not None and p.max_replications < self.replications:
            raise ValueError(
                f"precision.max_replications: {p.max_replications} is less than replications "
                f"({self.replications}), the initial count"
            )
        if p is not None and self.quantile_intervals == "bootstrap":
            raise ValueError(
                "quantile_intervals: bootstrap cannot be combined with precision (its stopping "
                "rule re-evaluates every cell after each wave, with sectioning intervals)"
            )
        return self

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

    @model_validator(mode="after")
    def _goodput_has_slo(self) -> Study:
        if self.goodput is not None and self.slo is None:
            raise ValueError("goodput: needs slo (attainment is measured against it)")
        return self

    def scenario(self) -> Scenario:
        """The study's own scenario, without sweep or explicit points applied."""
        return Scenario.model_validate(self.model_dump(include=set(SCENARIO_FIELDS)))


# ---------------------------------------------------------------- loading and error messages


_PATH_MESSAGE = re.compile(r"^[A-Za-z_][\w.-]*: ")


def _loc(error: dict[str, Any]) -> str:
    """Dotted field path of a pydantic error, without the union tag pydantic inserts."""
    loc = [str(part) for part in error["loc"]]
    if not str(error["type"]).startswith("union_tag"):
        for i in range(len(loc) - 1, -1, -1):
            if loc[i] in _union_tags() and i > 0:
                del loc[i]
                break
    return ".".join(loc)


def _flatten(node: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    """A schema node with its references resolved and its unions spread out."""
    if "$ref" in node:
        return _flatten(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
    out = [node]
    for key in ("anyOf", "oneOf"):
        for option in node.get(key, []):
            out += _flatten(option, defs)
    return out


@functools.lru_cache(maxsize=1)
def _study_schema() -> dict[str, Any]:
    return Study.model_json_schema()


@functools.lru_cache(maxsize=1)
def _union_tags() -> frozenset[str]:
    """Every tag of a tagged union in the spec (`lognormal`, `poisson`, `monolithic`, ...)."""
    tags: set[str] = set()
    stack: list[Any] = [_study_schema()]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            tags |= set(node.get("discriminator", {}).get("mapping", {}))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return frozenset(tags)


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """The field names the spec allows at `loc` (a pydantic error location, union tags
    included), found by walking the study's JSON schema."""
    schema = _study_schema()
    defs = schema.get("$defs", {})
    nodes = _flatten(schema, defs)
    for part in loc:
        step: list[dict[str, Any]] = []
        for node in nodes:
            mapping = node.get("discriminator", {}).get("mapping", {})
            if part in mapping:
                step += _flatten({"$ref": mapping[part]}, defs)
            elif part in node.get("properties", {}):
                step += _flatten(node["properties"][part], defs)
            elif node.get("type") == "object" and "patternProperties" in node:
                for value in node["patternProperties"].values():
                    step += _flatten(value, defs)
            elif node.get("type") == "array" and isinstance(part, int):
                step += _flatten(node.get("items", {}), defs)
        nodes = step
    names: list[str] = []
    for node in nodes:
        names += [name for name in node.get("properties", {}) if name not in names]
    return names


def _unknown_field_message(loc: tuple[Any, ...]) -> str:
    """'unknown field; did you mean `x`?' when a known field is close to the given name."""
    known = _fields_at(loc[:-1]) if loc else []
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6) if loc else []
    if close:
        return f"unknown field; did you mean `{close[0]}`?"
    if known:
        return f"unknown field (expected one of: {', '.join(known)})"
    return "unknown field (check the spelling)"


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One line: `field.path: message` for the first problem, and how many more there are."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    # A misspelt key shows up as a missing field and an unknown one: name the cause.
    for error in errors:
        if error["type"] == "extra_forbidden" and "did you mean" in _unknown_field_message(
            error["loc"]
        ):
            first = error
            break
    path = _loc(first)
    where = ".".join(p for p in (prefix, path) if p) or "spec"
    msg = str(first["msg"]).removeprefix("Value error, ")
    if not path and _PATH_MESSAGE.match(msg):  # a cross-field check that names its own field
        where, _, msg = msg.partition(": ")
        where = ".".join(p for p in (prefix, where) if p)
    if first["type"] == "extra_forbidden":
        msg = _unknown_field_message(first["loc"])
    elif first["type"] == "missing":
        msg = "required field is missing"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{where}: {msg}{more}"


# A spec is small. Bigger files, more values (YAML aliases can expand a short file into billions)
# or deeper nesting are refused before anything walks the data.
MAX_SPEC_BYTES = 16 * 1024 * 1024
MAX_SPEC_VALUES = 1_000_000
MAX_SPEC_DEPTH = 50


def check_shape(data: Any, where: str) -> None:
    """`SpecError` when `data`, aliases expanded, holds more than MAX_SPEC_VALUES values or nests
    deeper than MAX_SPEC_DEPTH (stops counting at the limit, so it is fast on any input)."""
    count = 0
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_SPEC_VALUES:
            raise SpecError(
                f"{where}: more than {MAX_SPEC_VALUES:,} values (YAML aliases expanding?); "
                "a spec is small"
            )
        if depth > MAX_SPEC_DEPTH:
            raise SpecError(f"{where}: nested deeper than {MAX_SPEC_DEPTH} levels")
        if isinstance(node, dict):
            for key, value in node.items():
                stack.append((key, depth + 1))
                stack.append((value, depth + 1))
        elif isinstance(node, list | tuple | set):
            stack.extend((value, depth + 1) for value in node)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping at the top of a YAML file, read with the safe loader (never anything that
    builds Python objects from tags), size- and depth-checked."""
    p = Path(path)
    if p.is_dir():
        raise SpecError(f"{p}: is a folder; give a spec file (YAML), e.g. studies/default.yaml")
    if not p.is_file():
        raise SpecError(f"{p}: no such spec file")
    try:
        if p.stat().st_size > MAX_SPEC_BYTES:
            raise SpecError(f"{p}: larger than {MAX_SPEC_BYTES // 2**20} MiB; a spec is small")
        raw = p.read_bytes()
        if b"\x00" in raw or not _is_utf8(raw):
            raise SpecError(f"{p}: not a text file (a spec is YAML text in UTF-8)")
        data = yaml.safe_load(raw.decode("utf-8"))
    except RecursionError:
        raise SpecError(f"{p}: invalid YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{p}: invalid YAML{where}: {problem}") from None
    except OSError as exc:
        raise SpecError(f"{p}: cannot read: {exc.strerror or exc}") from None
    if data is None:
        raise SpecError(f"{p}: the spec file is empty; see studies/default.yaml for an example")
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise SpecError(f"{p}: the spec must be a YAML mapping of fields, not {kind}")
    check_shape(data, str(p))
    return data


def parse_value(text: str) -> Any:
    """A `--set PATH=VALUE` value, read as a YAML scalar or flow collection (safe loader)."""
    try:
        value = yaml.safe_load(text)
    except RecursionError:
        raise SpecError(f"--set value {text[:40]!r}...: nested too deeply") from None
    except yaml.YAMLError:
        return text
    check_shape(value, "--set value")
    return value


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set `a.b.c` in a nested dict in place; every segment must already exist.

    A stored lognormal holds mu and sigma only; setting its `mean`, `cv`, `median` or `p90`
    rewrites it as that pair first (the other member keeping its current value).
    """
    parts = path.split(".")
    node: Any = data
    for i, part in enumerate(parts):
        if (
            i == len(parts) - 1
            and isinstance(node, dict)
            and part in ("mean", "cv", "median", "p90")
            and node.get("dist") == "lognormal"
            and part not in node
            and isinstance(node.get("mu"), int | float)
            and isinstance(node.get("sigma"), int | float)
        ):
            node.update(lognormal_pair(node.pop("mu"), node.pop("sigma"), part))
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


def editable_dump(study: Scenario) -> dict[str, Any]:
    """The spec as a mapping to edit and validate again: the TTFT definition at the study level
    (the architectures' copies of it removed), so an override of `first_token` takes effect."""
    data = study.model_dump(mode="python")
    for arch in data["architectures"].values():
        arch.pop("first_token", None)
    data["first_token"] = study.first_token
    return data


def apply_overrides(study: Study, overrides: dict[str, Any]) -> Study:
    """The study with dotted-path overrides applied (paths must exist), validated again.

    A relative data-file path given as an override (a key ending in `.path`, e.g. `--set
    workload.trace.path=my.csv`) is relative to the working directory and stored absolute.
    """
    data = copy.deepcopy(editable_dump(study))
    cwd = Path.cwd()
    for path, value in overrides.items():
        set_path(data, path, _resolve(value, cwd) if path.endswith(".path") else value)
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


def _resolve(value: Any, base: Path) -> Any:
    """A data-file path made absolute against `base`; anything else unchanged."""
    if isinstance(value, str) and value and not Path(value).is_absolute():
        try:
            return str((base / value).resolve())
        except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte: reading the
            return os.path.abspath(base / value)  # file reports it as a one-line error
    return value


def _resolve_dist(dist: Any, base: Path) -> None:
    if isinstance(dist, dict) and dist.get("dist") == "empirical" and "path" in dist:
        dist["path"] = _resolve(dist["path"], base)


def resolve_data_paths(data: dict[str, Any], base: Path) -> None:
    """Make every data-file path of a raw spec absolute, relative to `base`, in place.

    Covers workload.trace.path, the `path` of every empirical distribution (also inside
    workload.mix), and sweep values or explicit scenario points whose dotted path ends in
    `.path`. After this the study no longer depends on the working directory.
    """
    workload = data.get("workload")
    if isinstance(workload, dict):
        trace = workload.get("trace")
        if isinstance(trace, dict) and "path" in trace:
            trace["path"] = _resolve(trace["path"], base)
        for key in ("prompt_tokens", "output_tokens"):
            _resolve_dist(workload.get(key), base)
        mix = workload.get("mix")
        if isinstance(mix, list):
            for cls in mix:
                if isinstance(cls, dict):
                    for key in ("prompt_tokens", "output_tokens"):
                        _resolve_dist(cls.get(key), base)
    sweep = data.get("sweep")
    if isinstance(sweep, dict):
        for key, values in sweep.items():
            if str(key).endswith(".path") and isinstance(values, list):
                sweep[key] = [_resolve(v, base) for v in values]
    points = data.get("scenarios")
    if isinstance(points, list):
        for point in points:
            if isinstance(point, dict):
                for key in point:
                    if str(key).endswith(".path"):
                        point[key] = _resolve(point[key], base)


def load_study(path: str | Path, overrides: dict[str, Any] | None = None) -> Study:
    """Read, validate and override a study file; every problem is a one-line `SpecError`.

    Data-file paths in the file (traces, empirical columns) are relative to the file's folder;
    paths given as overrides (`--set workload.trace.path=...`) to the working directory. Both are
    stored absolute.
    """
    data = read_yaml(path)
    resolve_data_paths(data, Path(path).resolve().parent)
    study = validate_study(data)
    return apply_overrides(study, overrides) if overrides else study
