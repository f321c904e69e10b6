"""`warmup_s: auto`: a pilot fixes each scenario's warm-up before any of its rows is simulated.

Why before, and why per scenario: a stored row holds metrics and sketches of the requests that
arrived after the warm-up, so the warm-up is part of what a row means. If it were chosen from the
main run's own rows (and re-chosen as more replications arrive), rows stored earlier would hold a
different window than rows stored later, and nothing could be reused or compared. So:

1. **Pilot.** For every scenario whose `warmup_s` is `auto`, `PILOT_REPLICATIONS` replications
   are simulated with warm-up 0, every architecture on the same workload, on replication indices
   `PILOT_BASE + i`: random streams of their own, so the window is not chosen from the very data it
   is then applied to. Workers return their usual rows; only the TTFT time profile is used.
2. **Detection.** Per architecture, MSER-5 on the cross-replication average TTFT by arrival time,
   confirmed across replications (`diagnostics.detect_warmup`). The scenario's warm-up is the
   largest over its architectures, so all architectures are measured over the same requests and
   paired comparisons stay paired. The value is a bin start of the time profile (a multiple of
   duration_s / `PROFILE_BINS`).
3. **Resolution.** The scenario is planned with that number written in: its id is the id the same
   spec with `warmup_s: <number>` would have, so every stored row of an id means one window, and
   rows are reused by any later run that resolves (or is given) the same number. The pilot is
   deterministic (study seed, pilot indices), so a rerun resolves the same value; `manifest.json`
   records it (`warmup_auto`), a rerun takes it from there instead of repeating the pilot, and
   `distsim report` rebuilds the plan from it.

The cost is `PILOT_REPLICATIONS` extra replications per auto scenario (all architectures).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from distsim.errors import SpecError, StoreError
from distsim.runner.payload import PROFILE_COLUMN
from distsim.runner.plan import Plan, PlannedScenario, legacy_scenario_id, scenario_id
from distsim.runner.task import Unit
from distsim.spec.study import Scenario
from distsim.stats.diagnostics import TimeProfile, Warmup, detect_warmup, profile_from_json

AUTO = "auto"
# Replications of the pilot. MSER-5 on the average of 20 replications found the start-up
# transient of an M/M/1 at load 0.95 in 6 of 8 seeds, 10 replications in 4 of 8 (1000 s runs).
PILOT_REPLICATIONS = 20
# Pilot replication indices start here: beyond any main replication (at most 10**6).
PILOT_BASE = 10**9
MANIFEST_KEY = "warmup_auto"


@dataclass(frozen=True)
class Resolution:
    """The warm-up chosen for one auto scenario, and what each architecture's pilot showed."""

    pilot_id: str  # id of the scenario as written (warmup_s: auto)
    warmup_s: float
    detected_s: dict[str, float]  # architecture -> MSER-5 warm-up of its pilot
    reliable: dict[str, bool]  # False: no steady state seen in that architecture's pilot
    pilot_replications: int = PILOT_REPLICATIONS

    def to_record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> Resolution:
        return cls(
            pilot_id=str(data["pilot_id"]),
            warmup_s=float(data["warmup_s"]),
            detected_s={str(k): float(v) for k, v in data["detected_s"].items()},
            reliable={str(k): bool(v) for k, v in data["reliable"].items()},
            pilot_replications=int(data.get("pilot_replications", PILOT_REPLICATIONS)),
        )

    def unreliable(self) -> list[str]:
        return [arch for arch, ok in self.reliable.items() if not ok]


def is_auto(scenario: Scenario) -> bool:
    return scenario.warmup_s == AUTO


def auto_scenarios(plan: Plan) -> list[PlannedScenario]:
    """The plan's scenarios whose warm-up is still `auto`."""
    return [ps for ps in plan.scenarios if is_auto(ps.scenario)]


def pilot_scenario(scenario: Scenario) -> Scenario:
    """The scenario measured from time 0 (the pilot sees the whole run)."""
    return scenario.model_copy(update={"warmup_s": 0.0})


def pilot_units(ps: PlannedScenario, replications: int = PILOT_REPLICATIONS) -> list[Unit]:
    """The pilot's units: replications PILOT_BASE + i, every architecture."""
    archs = tuple(ps.scenario.architectures)
    return [Unit(ps.id, PILOT_BASE + i, archs) for i in range(replications)]


def resolve(pilot_id: str, profiles: Mapping[str, Sequence[TimeProfile]]) -> Resolution:
    """The scenario's warm-up from each architecture's pilot profiles (the largest detected)."""
    found: dict[str, Warmup] = {arch: detect_warmup(list(p)) for arch, p in profiles.items()}
    n = min((len(p) for p in profiles.values()), default=0)
    return Resolution(
        pilot_id=pilot_id,
        warmup_s=max((w.detected_s for w in found.values()), default=0.0),
        detected_s={a: w.detected_s for a, w in found.items()},
        reliable={a: w.reliable for a, w in found.items()},
        pilot_replications=n,
    )


def profiles_of(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[TimeProfile]]:
    """Architecture -> pilot profiles, in replication order, from rows a worker returned."""
    by_arch: dict[str, list[tuple[int, TimeProfile]]] = {}
    for row in rows:
        profile = profile_from_json(row[PROFILE_COLUMN])
        by_arch.setdefault(str(row["architecture"]), []).append((int(row["replication"]), profile))
    return {a: [p for _, p in sorted(v, key=lambda t: t[0])] for a, v in by_arch.items()}


def pilot_local(ps: PlannedScenario, replications: int = PILOT_REPLICATIONS) -> Resolution:
    """Run one scenario's pilot in this process (no Ray): for `distsim simulate` and tests."""
    from distsim.runner.task import run_batch

    batch = run_batch({ps.id: pilot_scenario(ps.scenario)}, pilot_units(ps, replications))
    if batch.errors:
        raise SpecError(f"warmup_s: auto: the pilot failed: {batch.errors[0]['error']}")
    return resolve(ps.id, profiles_of(batch.rows))


def apply(plan: Plan, resolutions: Mapping[str, Resolution]) -> Plan:
    """The plan with every auto warm-up replaced by its resolved number (and the new ids).

    Raises `SpecError` when a resolution is missing or two scenarios become the same.
    """
    planned: list[PlannedScenario] = []
    seen: dict[str, str] = {}
    for ps in plan.scenarios:
        if is_auto(ps.scenario):
            if ps.id not in resolutions:
                raise SpecError(f"warmup_s: auto: scenario {ps.label()} has no resolved warm-up")
            res = resolutions[ps.id]
            scenario = ps.scenario.model_copy(update={"warmup_s": res.warmup_s})
            ps = dataclasses.replace(
                ps,
                id=scenario_id(scenario),
                scenario=scenario,
                warmup_auto=res.to_record(),
                legacy_id=legacy_scenario_id(scenario),
            )
        if ps.id in seen:
            raise SpecError(
                f"scenarios: {ps.label()} and {seen[ps.id]} are the same scenario once "
                "warmup_s: auto is resolved; remove one"
            )
        seen[ps.id] = ps.label()
        planned.append(ps)
    return dataclasses.replace(plan, scenarios=tuple(planned))


def from_manifest(plan: Plan, manifest: Mapping[str, Any]) -> dict[str, Resolution]:
    """Resolutions recorded in a manifest for this plan's auto scenarios (others ignored)."""
    records = manifest.get(MANIFEST_KEY) or {}
    out: dict[str, Resolution] = {}
    if not isinstance(records, dict):
        return out
    for ps in auto_scenarios(plan):
        rec = records.get(ps.id)
        if isinstance(rec, dict):
            try:
                out[ps.id] = Resolution.from_record(rec)
            except (KeyError, TypeError, ValueError, AttributeError):
                continue  # unreadable record: the pilot runs again
    return out


def manifest_records(plan: Plan) -> dict[str, dict[str, Any]]:
    """What manifest.json records of a resolved plan: pilot id -> resolution (and the new id)."""
    out: dict[str, dict[str, Any]] = {}
    for ps in plan.scenarios:
        if ps.warmup_auto is not None:
            out[ps.warmup_auto["pilot_id"]] = {**ps.warmup_auto, "scenario_id": ps.id}
    return out


def resolve_plan(
    plan: Plan,
    manifest: Mapping[str, Any],
    run_pilots: Callable[[list[PlannedScenario]], dict[str, Resolution]],
) -> Plan:
    """The plan with auto warm-ups resolved: from the manifest where recorded, else by running
    the pilots of the rest (`run_pilots`, e.g. on Ray)."""
    todo = auto_scenarios(plan)
    if not todo:
        return plan
    known = from_manifest(plan, manifest)
    missing = [ps for ps in todo if ps.id not in known]
    if missing:
        known.update(run_pilots(missing))
    return apply(plan, known)


def stored_plan(plan: Plan, manifest: Mapping[str, Any]) -> Plan:
    """The resolved plan of a stored study (`distsim report`): every auto warm-up must be in
    the manifest."""
    if not auto_scenarios(plan):
        return plan
    known = from_manifest(plan, manifest)
    missing = [ps.label() for ps in auto_scenarios(plan) if ps.id not in known]
    if missing:
        raise StoreError(
            f"warmup_s: auto not resolved yet for {', '.join(missing)} (no record in "
            "manifest.json); run the study to resolve it"
        )
    return apply(plan, known)
