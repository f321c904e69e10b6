"""The experimental design: a study expands into scenarios x architectures x replications.

`sweep` (dotted path -> list of values) spans a cartesian grid; `scenarios` lists explicit
points (dotted path -> value). With both, every explicit point is crossed with the grid. Every
resulting scenario is validated before anything runs, and gets a stable id: a short hash of the
resolved fields that change what is simulated (`spec.SCENARIO_FIELDS`), so study-level settings
(name, replications, confidence, baseline) never invalidate stored rows.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import reprlib
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from distsim.errors import SpecError
from distsim.sim import serving
from distsim.sim.step_time import PROFILE_PIPELINE_OVERHEAD_S
from distsim.spec.study import (
    SCENARIO_FIELDS,
    Scenario,
    Study,
    editable_dump,
    format_validation_error,
    set_path,
)
from distsim.stats.goodput import with_rate_sweep
from distsim.workload.generate import arrival_rate_rps, data_digests

# Bump when the simulation model changes meaning, so rows simulated by an older model are
# never reused for a scenario that looks the same.
MODEL_VERSION = 2  # 2: batched engine runs output - 1 decode iterations; profile overhead

# A study with more scenarios than this is almost certainly a mistake in the sweep.
MAX_SCENARIOS = 10_000

# Column names a swept parameter must not take (it is already a column under that name).
_CORE_COLUMNS = ("scenario_id", "architecture", "replication", "seed")


@dataclass(frozen=True)
class PlannedScenario:
    """One point of the design: the resolved scenario, its id and its swept parameter values."""

    id: str
    index: int
    scenario: Scenario
    params: dict[str, Any]  # dotted path -> resolved value (scalars; JSON text for mappings)
    # For `warmup_s: auto`, once resolved: the pilot's record (see distsim.runner.warmup).
    warmup_auto: dict[str, Any] | None = None
    # The id before ids named data files by content (`legacy_scenario_id`), when it differs.
    legacy_id: str | None = None

    def label(self) -> str:
        """`id` plus the swept values, e.g. `3f2a9c01d2 (workload.arrival.rate_rps=2.0)`."""
        if not self.params:
            return self.id
        inner = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.id} ({inner})"


@dataclass(frozen=True)
class Plan:
    """Everything `distsim run` will do, known before anything runs."""

    study: Study
    scenarios: tuple[PlannedScenario, ...]
    param_paths: tuple[str, ...]  # swept paths, in spec order: the extra result columns
    architectures: tuple[str, ...]
    baseline: str
    replications: int  # per scenario; with `precision`, the initial count
    confidence: float

    @property
    def max_replications(self) -> int:
        """The most replications a scenario may get: `precision.max_replications` (or
        `select.max_replications`), else `replications`. Stored rows beyond it do not belong
        to the plan."""
        precision = getattr(self.study, "precision", None)
        if precision is not None:
            return precision.max_replications
        select = getattr(self.study, "select", None)
        return select.max_replications if select is not None else self.replications

    def scenario(self, scenario_id: str) -> PlannedScenario:
        for s in self.scenarios:
            if s.id == scenario_id:
                return s
        known = ", ".join(s.id for s in self.scenarios)
        raise SpecError(f"--scenario: '{scenario_id}' is not a scenario of the plan ({known})")

    @property
    def id_aliases(self) -> dict[str, str]:
        """Old scenario id -> id, for stored rows written before ids hashed data content."""
        return {s.legacy_id: s.id for s in self.scenarios if s.legacy_id and s.legacy_id != s.id}

    @property
    def units(self) -> int:
        """(scenario, replication) pairs: each runs every architecture on one workload."""
        return len(self.scenarios) * self.replications

    @property
    def rows(self) -> int:
        """(scenario, architecture, replication) rows of `replications.parquet`."""
        return self.units * len(self.architectures)

    def expected_requests(self) -> float:
        """Simulated requests the whole study is expected to take (every architecture)."""
        return sum(expected_requests_per_unit(s.scenario) for s in self.scenarios) * (
            self.replications
        )


def expected_requests_per_unit(scenario: Scenario) -> float:
    """Requests simulated for one replication of one scenario, over all its architectures."""
    per_arch = arrival_rate_rps(scenario.workload, scenario.duration_s) * scenario.duration_s
    return per_arch * len(scenario.architectures)


# Rough CPU cost of simulating one request, relative to the compiled exclusive engine (a few
# million requests/s/core); the batched engine is far slower per request. Used only to size Ray
# tasks (`execute.TARGET_TASK_REQUESTS` is in exclusive-engine requests).
ENGINE_COST = {"exclusive": 1.0, "batched": 100.0}


def expected_cost_per_unit(scenario: Scenario) -> float:
    """`expected_requests_per_unit` weighted by the engine's cost per request."""
    weight = ENGINE_COST.get(str(getattr(scenario, "engine", "exclusive")), 1.0)
    return expected_requests_per_unit(scenario) * weight


# Fields that do not change what is simulated (price and power enter at aggregation), and fields
# added later whose default reproduces the earlier model: left out of the id, so a study stored
# before they existed keeps its ids and its finished replications.
_NOT_SIMULATED = ("usd_per_hour", "power_w")
_LATER_DEFAULTS = {
    "scheduler": "custom",
    "kv_block_tokens": 1,
    "kv_reserved_gb": None,
    "kv_watermark": 0.0,
    "routing": "central",
    "gpu": None,
    "prefill_gpu": None,
    "decode_gpu": None,
}


def _gpu_for_id(gpu: Any) -> Any:
    if isinstance(gpu, dict):
        return {k: v for k, v in gpu.items() if k not in _NOT_SIMULATED}
    return gpu


def _pipelined_overhead_s(step_time: Any) -> float | None:
    """The profile preset's fitted overhead of pipeline-parallel instances that a scenario uses
    (None: no preset, an explicit overhead_s, or no pipelined value). Part of the id of
    scenarios with pipelined instances, so that rows simulated with another value (or before
    it existed) are not reused for them; other scenarios' ids do not change."""
    if not isinstance(step_time, dict) or step_time.get("model") != "profile":
        return None
    if step_time.get("overhead_s") is not None:
        return None
    return PROFILE_PIPELINE_OVERHEAD_S.get(step_time.get("preset"))


def _dump_for_id(scenario: Scenario) -> dict[str, Any]:
    """The scenario as JSON data, without the fields `_NOT_SIMULATED` and `_LATER_DEFAULTS`."""
    data = scenario.model_dump(mode="json")
    data["gpu"] = _gpu_for_id(data["gpu"])
    if isinstance(data.get("model"), dict) and data["model"].get("active_params_b") is None:
        data["model"].pop("active_params_b", None)
    pipelined = _pipelined_overhead_s(data.get("step_time"))
    for name, arch in data["architectures"].items():
        kept = {k: v for k, v in arch.items() if _LATER_DEFAULTS.get(k, object()) != v}
        if pipelined is not None and arch.get("decode_pipeline_parallel", 1) > 1:
            kept["pipelined_overhead_s"] = pipelined
        data["architectures"][name] = {k: _gpu_for_id(v) for k, v in kept.items()}
    return data


def scenario_id(scenario: Scenario) -> str:
    """A 10-hex-digit hash of the resolved scenario (key order does not matter) in which every
    data file is named by its content's SHA-256, not its path: a trace edited in place is a new
    scenario, and the same study with its data in another folder (another machine, a moved
    results folder) has the same ids."""
    digests = data_digests(scenario.workload)
    dumped = _dump_for_id(scenario)
    if digests:
        dumped["workload"] = _by_content(dumped["workload"], digests)
    payload: dict[str, Any] = {"model_version": MODEL_VERSION, "scenario": dumped}
    return _hash(payload)


def legacy_scenario_id(scenario: Scenario) -> str | None:
    """The id this scenario had before ids named data files by content (its absolute path and
    the digests by path); None when it reads no data file (its id did not change). Rows stored
    under it are adopted under `scenario_id` (`Plan.id_aliases`)."""
    digests = data_digests(scenario.workload)
    if not digests:
        return None
    payload = {
        "model_version": MODEL_VERSION,
        "scenario": _dump_for_id(scenario),
        "data_sha256": digests,
    }
    return _hash(payload)


def _hash(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def _by_content(node: Any, digests: dict[str, str]) -> Any:
    """`node` with every data-file `path` field replaced by `sha256:<digest>` of its content."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "path" and isinstance(value, str) and value in digests:
                out[key] = f"sha256:{digests[value]}"
            else:
                out[key] = _by_content(value, digests)
        return out
    if isinstance(node, list):
        return [_by_content(v, digests) for v in node]
    return node


def get_path(data: Any, path: str) -> Any:
    """The value at dotted `path` of nested mappings, or None where the path does not exist
    (a parameter only some explicit points set, under a subtree another point replaced)."""
    node = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _column_value(value: Any) -> Any:
    """A parameter value as a result-table cell: scalars as is, anything nested as JSON text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, sort_keys=True)


def _short(value: Any) -> str:
    """A value as quoted in an error: its repr, with long or deeply nested values abbreviated."""
    return _REPR.repr(value)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 3, 6, 6
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 60, 60, 40


def _check_path(path: Any, where: str) -> str:
    if not isinstance(path, str) or not path:
        raise SpecError(f"{where}: a parameter path must be a non-empty dotted string")
    head = path.split(".")[0]
    if head not in SCENARIO_FIELDS:
        allowed = ", ".join(SCENARIO_FIELDS)
        raise SpecError(
            f"{where}.{path}: not a simulated field; sweeps and scenarios may set only "
            f"paths under {allowed}"
        )
    return path


def _points(study: Study) -> list[tuple[str, dict[str, Any]]]:
    """(origin, overrides) of every scenario: explicit points crossed with the sweep grid."""
    grid_paths = [_check_path(p, "sweep") for p in study.sweep]
    explicit: list[tuple[str, dict[str, Any]]] = []
    for i, point in enumerate(study.scenarios):
        for path in point:
            _check_path(path, f"scenarios[{i}]")
            if path in study.sweep:
                raise SpecError(
                    f"scenarios[{i}].{path}: also swept in sweep.{path}; set it in one place"
                )
        explicit.append((f"scenarios[{i}]", dict(point)))
    if not explicit:
        explicit = [("", {})]
    size = len(explicit) * math.prod(len(v) for v in study.sweep.values())
    if size > MAX_SCENARIOS:
        raise SpecError(
            f"sweep: {size} scenarios is more than the limit of {MAX_SCENARIOS}; sweep fewer values"
        )
    out: list[tuple[str, dict[str, Any]]] = []
    for origin, point in explicit:
        for combo in itertools.product(*(study.sweep[p] for p in grid_paths)):
            overrides = dict(point)
            overrides.update(zip(grid_paths, combo, strict=True))
            out.append((origin, overrides))
    return out


def _origin_of(path: str, explicit_origin: str, study: Study) -> str:
    if path in study.sweep:
        return f"sweep.{path}"
    return f"{explicit_origin}.{path}" if explicit_origin else path


def _share(new: Any, ref: Any) -> Any:
    """`new` with every part equal to the same part of `ref` replaced by `ref`'s object. Spec
    models are frozen, so one object can serve every scenario of a sweep: a scenario then holds
    only what its point changes (a resolved scenario is ~10 KB of model objects, so 10^4
    scenarios held ~100 MB in the driver). Values, ids and pickles are unchanged."""
    if new is ref or type(new) is not type(ref):
        return new
    if isinstance(new, BaseModel):
        if new == ref:
            return ref
        for name in type(new).model_fields:
            part, shared = getattr(new, name), _share(getattr(new, name), getattr(ref, name))
            if shared is not part:
                object.__setattr__(new, name, shared)  # frozen: set once, before anyone reads it
        return new
    if isinstance(new, dict):
        if new == ref:
            return ref
        for key, value in new.items():
            if key in ref:
                new[key] = _share(value, ref[key])
        return new
    if isinstance(new, tuple | frozenset | str | int | float) and new == ref:
        return ref
    return new


def _resolve(study: Study, base: dict[str, Any], origin: str, overrides: dict[str, Any]) -> Study:
    """The study with one point's overrides applied, validated; errors name the swept path."""
    data = copy.deepcopy(base)
    for path, value in overrides.items():
        try:
            set_path(data, path, value)
        except SpecError as exc:
            where = _origin_of(path, origin, study)
            raise SpecError(f"{where}: {_after_path(exc, path)}") from None
    try:
        resolved = Study.model_validate(data)
    except ValidationError as exc:
        raise SpecError(
            _value_error(study, origin, overrides, format_validation_error(exc))
        ) from None
    try:
        serving.check(resolved)  # what the engine needs: token rates, step model, KV capacity
    except ValueError as exc:
        raise SpecError(_value_error(study, origin, overrides, str(exc))) from None
    if tuple(resolved.architectures) != tuple(study.architectures):
        point = ", ".join(f"{k}={_short(v)}" for k, v in overrides.items())
        raise SpecError(
            f"scenario ({point}): every scenario must keep the study's architectures "
            f"({', '.join(study.architectures)}) so they can be compared"
        )
    return resolved


def _value_error(study: Study, origin: str, overrides: dict[str, Any], message: str) -> str:
    """`message` (`field.path: problem`) said of the swept or explicit value that caused it."""
    if not overrides:
        return message
    loc, _, problem = message.partition(": ")
    for path, value in overrides.items():
        if loc == path or loc.startswith(path + "."):
            return f"{_origin_of(path, origin, study)}: value {_short(value)}: {problem}"
    point = ", ".join(f"{k}={_short(v)}" for k, v in overrides.items())
    return f"scenario ({point}): {message}"


def _after_path(exc: SpecError, path: str) -> str:
    text = str(exc)
    return text[len(path) + 2 :] if text.startswith(path + ": ") else text


def plan_study(study: Study) -> Plan:
    """Expand and validate every scenario of a study; one-line `SpecError` on any problem."""
    study = with_rate_sweep(study)  # `goodput`: its rates are swept like any parameter
    base = editable_dump(study)
    base["sweep"], base["scenarios"] = {}, []
    param_paths: list[str] = list(study.sweep)
    for point in study.scenarios:
        for path in point:
            if path not in param_paths:
                param_paths.append(path)
    planned: list[PlannedScenario] = []
    seen: dict[str, str] = {}
    for origin, overrides in _points(study):
        resolved = _resolve(study, base, origin, overrides)
        scenario = resolved.scenario()
        sid = scenario_id(scenario)
        point = ", ".join(f"{k}={_short(v)}" for k, v in overrides.items()) or "the base scenario"
        if sid in seen:
            raise SpecError(
                f"scenarios: ({point}) simulates the same scenario as ({seen[sid]}); "
                "remove the duplicate"
            )
        seen[sid] = point
        dumped = scenario.model_dump(mode="json")
        dumped["first_token"] = scenario.first_token  # not in dumps (see Scenario.first_token)
        # A swept value the resolved scenario does not store as given (a lognormal's mean, cv,
        # median or p90: stored as mu and sigma) is labelled with the value the point set.
        params: dict[str, Any] = {}
        for p in param_paths:
            if p not in _CORE_COLUMNS:
                value = get_path(dumped, p)
                if value is None and p in overrides:
                    value = overrides[p]
                params[p] = _column_value(value)
        legacy = legacy_scenario_id(scenario)
        if planned:  # the parts equal to the first scenario's are that scenario's objects
            scenario = _share(scenario, planned[0].scenario)
        planned.append(PlannedScenario(sid, len(planned), scenario, params, legacy_id=legacy))
    return Plan(
        study=study,
        scenarios=tuple(planned),
        param_paths=tuple(p for p in param_paths if p not in _CORE_COLUMNS),
        architectures=tuple(study.architectures),
        baseline=str(study.baseline),
        replications=study.replications,
        confidence=study.confidence,
    )
