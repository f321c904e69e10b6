"""Precision-driven replication: how many replications each scenario gets, and how precise its
cells came out.

With a `precision` block, a study first runs its `replications`, then waves: each wave adds
about one replication per CPU (`diagnostics.next_wave`), shared among the scenarios that still
have a scenario x architecture cell whose interval half-width on a listed metric exceeds
`rel_half_width` x |estimate|, and never takes a scenario past `max_replications`. Every
architecture of a scenario runs each of its replications, so comparisons stay paired.

**The stored rows decide.** A scenario's replication count is

    N = max(replications, length of the run of complete replications 0, 1, 2, ...)

capped at `max_replications`, where a replication is complete when every architecture has its
row. Its cells are summarised over replications 0..N-1, by the run, by `distsim report` and by
any rerun alike. A rerun therefore resumes where the rows end: it evaluates each scenario at its
N and plans waves from there; a study whose cells all meet the target (or sit at the cap) runs
nothing. Which N a scenario ends at depends on where the waves stopped (their size follows the
CPUs), but every N is a point where the rule was checked, and the numbers for given rows never
depend on how they were produced.

Evaluation here uses the same estimators as `aggregate.summarize` (pooled quantile with its
Woodruff interval when sketches are stored, Student t over replications otherwise), kept
incrementally: pooled sketches are merged as the count grows, so a study of many waves does not
re-read its rows each time (each replication's sketch is kept for the interval's shares).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from distsim.runner.aggregate import quantile_of
from distsim.runner.plan import Plan
from distsim.runner.task import Unit
from distsim.stats import compare as stats
from distsim.stats import diagnostics
from distsim.stats.sketch import LogHistogram, from_json

CAPPED_FLAG = "precision_capped"


def complete_prefix(present: Mapping[int, set[str]], architectures: Iterable[str]) -> int:
    """Length of the run 0, 1, 2, ... of replications that every architecture has."""
    needed = set(architectures)
    n = 0
    while needed <= present.get(n, set()):
        n += 1
    return n


def scenario_total(plan: Plan, present: Mapping[int, set[str]]) -> int:
    """A scenario's replication count N (module docstring) from the rows it has."""
    n = max(plan.replications, complete_prefix(present, plan.architectures))
    return min(n, plan.max_replications)


def presence(rows: pd.DataFrame) -> dict[str, dict[int, set[str]]]:
    """Scenario id -> replication -> architectures that have a row."""
    out: dict[str, dict[int, set[str]]] = {}
    if rows.empty:
        return out
    for sid, arch, rep in zip(
        rows["scenario_id"], rows["architecture"], rows["replication"].astype(int), strict=True
    ):
        out.setdefault(sid, {}).setdefault(int(rep), set()).add(str(arch))
    return out


def totals(rows: pd.DataFrame, plan: Plan) -> dict[str, int]:
    """Scenario id -> its replication count N."""
    have = presence(rows)
    return {ps.id: scenario_total(plan, have.get(ps.id, {})) for ps in plan.scenarios}


def used_rows(rows: pd.DataFrame, plan: Plan) -> pd.DataFrame:
    """The rows a precision study summarises: each scenario's replications below its N.
    Without `precision`, the rows unchanged."""
    if plan.study.precision is None or rows.empty:
        return rows
    n = totals(rows, plan)
    keep = rows["replication"].astype(int) < rows["scenario_id"].map(n).fillna(0).astype(int)
    return rows[keep.to_numpy()].reset_index(drop=True)


# ---------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class CellPrecision:
    """One scenario x architecture x metric at the scenario's current count."""

    scenario_id: str
    architecture: str
    metric: str
    estimate: float
    half_width: float
    rel_half_width: float
    n: int


@dataclass
class _Quantile:
    """One cell's sketches of one quantile metric: each replication's sketch and a pooled
    sketch merged over replications 0..upto-1 (the rest wait in `pending`)."""

    level: float
    per_rep: dict[int, LogHistogram] = field(default_factory=dict)
    pending: dict[int, LogHistogram] = field(default_factory=dict)
    merged: LogHistogram = field(default_factory=LogHistogram.empty)
    upto: int = 0


class Tracker:
    """The precision metrics of every stored row, kept to evaluate cells as rows arrive."""

    def __init__(self, plan: Plan) -> None:
        if plan.study.precision is None:
            raise ValueError("the study has no precision block")
        self.plan = plan
        self.precision = plan.study.precision
        self._present: dict[str, dict[int, set[str]]] = {ps.id: {} for ps in plan.scenarios}
        self._values: dict[tuple[str, str, str], dict[int, float]] = {}
        self._quantiles: dict[tuple[str, str, str], _Quantile] = {}
        self._sketch_text: dict[tuple[str, str, str], dict[int, str]] = {}

    # ---------------------------------------------------------------- rows in

    def add(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Rows as workers return them (or records of the stored table)."""
        for row in rows:
            sid, arch, rep = (
                str(row["scenario_id"]),
                str(row["architecture"]),
                int(row["replication"]),
            )
            if sid not in self._present or arch not in self.plan.architectures:
                continue
            if rep >= self.plan.max_replications:
                continue
            self._present[sid].setdefault(rep, set()).add(arch)
            for metric in self.precision.metrics:
                quantile = quantile_of(metric)
                text = row.get(quantile[0]) if quantile else None
                if quantile and isinstance(text, str):
                    q = self._quantiles.setdefault((sid, arch, metric), _Quantile(quantile[1]))
                    if rep in q.per_rep:
                        continue  # a duplicate row: the first copy counts
                    sketch = from_json(text)
                    q.per_rep[rep] = q.pending[rep] = sketch
                else:
                    value = row.get(metric)
                    if value is not None and np.isfinite(float(value)):
                        self._values.setdefault((sid, arch, metric), {}).setdefault(
                            rep, float(value)
                        )

    def add_frame(self, rows: pd.DataFrame) -> None:
        if not rows.empty:
            self.add(rows.to_dict("records"))

    # ---------------------------------------------------------------- state out

    def present(self, scenario_id: str, replication: int) -> set[str]:
        """Architectures with a row for this replication."""
        return self._present.get(scenario_id, {}).get(replication, set())

    def totals(self) -> dict[str, int]:
        return {sid: scenario_total(self.plan, p) for sid, p in self._present.items()}

    def _pooled(self, q: _Quantile, n: int) -> float:
        """Pooled quantile over replications below `n` (merging those not merged yet)."""
        if n < q.upto:
            raise ValueError("precision: a scenario's count cannot go down during a run")
        new = [r for r in q.pending if r < n]
        if new:
            q.merged = LogHistogram.merge([q.merged, *(q.pending.pop(r) for r in new)])
        q.upto = n
        return float(q.merged.quantile(q.level))

    def evaluate(self, scenario_id: str, n: int) -> list[CellPrecision]:
        """Every (architecture, metric) cell of a scenario over its replications below `n`."""
        out: list[CellPrecision] = []
        conf = self.plan.confidence
        for arch in self.plan.architectures:
            for metric in self.precision.metrics:
                key = (scenario_id, arch, metric)
                q = self._quantiles.get(key)
                if q is not None:
                    reps = sorted(r for r in q.per_rep if r < n)
                    if len(reps) < 2:
                        continue
                    self._pooled(q, n)
                    sec = stats.quantile_section(
                        [q.per_rep[r] for r in reps], q.level, conf, merged=q.merged
                    )
                    iv = stats.Interval(sec.pooled, sec.low, sec.high, sec.n)
                else:
                    values = self._values.get(key, {})
                    reps = sorted(r for r in values if r < n)
                    if len(reps) < 2:
                        continue
                    iv = stats.mean_interval(np.array([values[r] for r in reps]), conf)
                out.append(
                    CellPrecision(
                        scenario_id,
                        arch,
                        metric,
                        iv.estimate,
                        iv.half_width,
                        diagnostics.relative_half_width(iv),
                        iv.n,
                    )  # fmt: skip
                )
        return out

    def needed(self, scenario_id: str, n: int) -> int:
        """Replications the scenario's widest cell needs (1/sqrt(R) scaling), at least `n`."""
        target = self.precision.rel_half_width
        return max(
            (
                diagnostics.replications_needed(n, c.rel_half_width, target)
                for c in self.evaluate(scenario_id, n)
            ),
            default=n,
        )


def wave_units(
    plan: Plan, current: Mapping[str, int], wave: Mapping[str, int], have: Tracker
) -> list[Unit]:
    """Units that take each scenario of a wave from its current count to its new total
    (replication-major; architectures already stored are skipped)."""
    units: list[Unit] = []
    top = max(wave.values(), default=0)
    for r in range(min(current.values(), default=0), top):
        for ps in plan.scenarios:
            if ps.id not in wave or not current[ps.id] <= r < wave[ps.id]:
                continue
            present = have.present(ps.id, r)
            archs = tuple(a for a in plan.architectures if a not in present)
            if archs:
                units.append(Unit(ps.id, r, archs))
    return units


# ---------------------------------------------------------------------------- reporting


PRECISION_COLUMNS = [
    "scenario_id", "architecture", "metric", "estimate", "rel_half_width", "n", "met", "capped",
]  # fmt: skip


def status(summary: pd.DataFrame, plan: Plan) -> pd.DataFrame:
    """Achieved precision per scenario x architecture x precision metric, from the summary:
    relative half-width, replications used, target met, and whether the cap stopped it."""
    p = plan.study.precision
    if p is None or summary.empty:
        return pd.DataFrame(columns=PRECISION_COLUMNS)
    rows = summary[summary["metric"].isin(p.metrics)]
    records = []
    for r in rows.itertuples(index=False):
        est, lo, hi = float(r.estimate), float(r.ci_low), float(r.ci_high)
        half = (hi - lo) / 2.0
        rel = 0.0 if half == 0 else (half / abs(est) if est != 0 else float("inf"))
        met = rel <= p.rel_half_width
        records.append(
            {
                "scenario_id": r.scenario_id,
                "architecture": r.architecture,
                "metric": r.metric,
                "estimate": est,
                "rel_half_width": rel,
                "n": int(r.n),
                "met": bool(met),
                "capped": bool(not met and int(r.n) >= p.max_replications),
            }
        )
    return pd.DataFrame(records, columns=PRECISION_COLUMNS)


def add_flags(summary: pd.DataFrame, plan: Plan) -> pd.DataFrame:
    """For a precision study: the summary with a last column `rel_half_width` (half-width /
    |estimate|, the achieved precision of every row) and `precision_capped` added to the flags
    of rows that missed the target at the cap. Other studies: unchanged."""
    if plan.study.precision is None or summary.empty:
        return summary
    summary = summary.copy()
    half = (summary["ci_high"] - summary["ci_low"]) / 2.0
    est = summary["estimate"].abs()
    summary["rel_half_width"] = np.where(
        half == 0, 0.0, np.where(est > 0, half / est.where(est > 0, 1.0), np.inf)
    )
    st = status(summary, plan)
    if st.empty or not st["capped"].any():
        return summary
    capped = set(
        zip(
            *(st.loc[st["capped"], c] for c in ("scenario_id", "architecture", "metric")),
            strict=True,
        )
    )
    out = summary.copy()
    for i, r in enumerate(out.itertuples(index=False)):
        if (r.scenario_id, r.architecture, r.metric) in capped:
            flags = [f for f in str(r.flags or "").split(";") if f and f != "nan"]
            out.iat[i, out.columns.get_loc("flags")] = ";".join(sorted({*flags, CAPPED_FLAG}))
    return out
