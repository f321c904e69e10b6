"""A sweep read over its swept parameters instead of scenario by scenario.

The swept paths are grouped into axes: paths whose values move together (each value of one fixes
the other's, e.g. a prefill+decode split of a fixed GPU budget written as explicit points) form
one axis, whose values are tuples. Every comparison falls into one verdict class (`classify`),
the classes are counted per value of each axis (`value_table`: the terminal's and report.md's
"verdict per swept value") and laid out over two axes for the heat maps (`heat_grid`, drawn by
`distsim.report.sweep_plots`). Pure functions of the plan and the comparisons table: no I/O.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from distsim.runner.plan import Plan

# Verdict classes, in legend order. "alone": the comparison's own p-value is below alpha (its
# interval clears 0) but it is not significant after the study's adjustment.
LOWER, HIGHER, ALONE, NOT_SIGNIFICANT, NOT_TESTED, NO_RESULT = (
    "lower", "higher", "alone", "not significant", "not tested", "no result",
)  # fmt: skip
KINDS = (LOWER, HIGHER, ALONE, NOT_SIGNIFICANT, NOT_TESTED, NO_RESULT)

_UNITS = {
    "_tokens_per_s": "tokens/s",
    "_rps": "req/s",
    "_s": "s",
    "_gb_s": "GB/s",
    "_tokens": "tokens",
    "_gpus": "GPUs",
}


def param_label(path: str) -> str:
    """A reader's axis name for a swept path, e.g. `workload.arrival.rate_rps` ->
    `arrival rate (req/s)`, `workload.trace.rate_scale` -> `trace rate scale (x)`."""
    parts = path.split(".")
    leaf = parts[-1]
    unit = ""
    for suffix, name in sorted(_UNITS.items(), key=lambda kv: -len(kv[0])):
        if leaf.endswith(suffix):
            leaf, unit = leaf[: -len(suffix)], name
            break
    if leaf.endswith("scale") and not unit:
        unit = "x"
    words = leaf.replace("_", " ") + (" speed" if unit == "tokens/s" else "")
    parent = parts[-2] if len(parts) > 1 else ""
    arch = parts[1] if len(parts) > 2 and parts[0] == "architectures" else ""
    if parent and parent not in ("workload", "gpu", "architectures", arch):
        words = f"{parent.replace('_', ' ')} {words}"
    if arch:  # an architecture's field: named after the architecture
        words = f"{arch} {words}"
    words = words.replace("slo ", "SLO ").replace("tpot", "TPOT").replace("ttft", "TTFT")
    return f"{words} ({unit})" if unit else words


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def scenario_text(params: dict[str, Any]) -> str:
    """Swept values as a reader would say them: `arrival rate 2 req/s`."""
    out = []
    for path, value in params.items():
        label = param_label(path)
        name, _, unit = label.partition(" (")
        unit = unit.rstrip(")")
        out.append(f"{name} {_shown(value)}" + ("x" if unit == "x" else f" {unit}" if unit else ""))
    return ", ".join(out)


@dataclass(frozen=True)
class Axis:
    """One swept direction: one path, or several whose values move together."""

    paths: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]  # distinct, numeric order when every value is a number

    @property
    def numeric(self) -> bool:
        return len(self.paths) == 1 and all(_is_number(v[0]) for v in self.values)

    def label(self) -> str:
        """`arrival rate (req/s)`; a joint axis: `disaggregated prefill / decode (GPUs)`."""
        labels = [param_label(p) for p in self.paths]
        if len(labels) == 1:
            return labels[0]
        names = [lb.partition(" (")[0] for lb in labels]
        units = {lb.partition(" (")[2] for lb in labels}
        first = names[0].split(" ")
        # a shared leading word (the architecture's name) is said once
        if len(first) > 1 and all(n.split(" ")[0] == first[0] for n in names):
            names = [names[0]] + [n.split(" ", 1)[1] for n in names[1:]]
        text = " / ".join(names)
        return f"{text} ({units.pop()}" if len(units) == 1 and units != {""} else text

    def tick(self, i: int) -> str:
        """Value `i` as a tick label: `2`, or `1/3` on a joint axis."""
        return "/".join(_shown(v) for v in self.values[i])

    def said(self, i: int) -> str:
        """Value `i` in words: `arrival rate 2 req/s`, `disaggregated prefill / decode 1/3 GPUs`."""
        if len(self.paths) == 1:
            return scenario_text({self.paths[0]: self.values[i][0]})
        name, _, unit = self.label().partition(" (")
        return f"{name} {self.tick(i)}" + (f" {unit.rstrip(')')}" if unit else "")


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


_AXES: dict[int, tuple[Plan, Any]] = {}  # the last plan's axes (a report asks many times)


def sweep_axes(plan: Plan) -> tuple[list[Axis], dict[str, tuple[int, ...]]]:
    """The study's axes (spec order; paths with a single value are not axes) and, per scenario
    id, the index of its value on each axis."""
    hit = _AXES.get(id(plan))
    if hit is not None and hit[0] is plan:
        return hit[1]
    _AXES.clear()
    found = _sweep_axes(plan)
    _AXES[id(plan)] = (plan, found)
    return found


def _sweep_axes(plan: Plan) -> tuple[list[Axis], dict[str, tuple[int, ...]]]:
    paths = [
        p for p in plan.param_paths if len({_key(ps.params.get(p)) for ps in plan.scenarios}) > 1
    ]
    cols = {p: [_key(ps.params.get(p)) for ps in plan.scenarios] for p in paths}
    groups: list[list[str]] = []
    for p in paths:
        for g in groups:
            q = g[0]
            pairs = set(zip(cols[p], cols[q], strict=True))
            if len(pairs) == len(set(cols[p])) == len(set(cols[q])):  # one fixes the other
                g.append(p)
                break
        else:
            groups.append([p])
    axes = []
    for g in groups:
        seen = list(dict.fromkeys(zip(*(cols[p] for p in g), strict=True)))
        if all(_is_number(x) for v in seen for x in v):
            seen.sort()
        axes.append(Axis(tuple(g), tuple(seen)))
    where = [{v: k for k, v in enumerate(ax.values)} for ax in axes]
    index = {
        ps.id: tuple(
            w[tuple(cols[p][i] for p in ax.paths)] for ax, w in zip(axes, where, strict=True)
        )
        for i, ps in enumerate(plan.scenarios)
    }
    return axes, index


def _key(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def classify(detail: pd.DataFrame, alpha: float) -> np.ndarray:
    """Each comparison row's verdict class (KINDS): significant after adjustment and lower or
    higher; significant alone only; not significant; not tested (overloaded); no result."""
    n = len(detail)
    if n == 0:
        return np.array([], dtype=object)
    rel = detail["rel_diff"].to_numpy(dtype=float)
    sig = detail["significant"].fillna(False).to_numpy(dtype=bool)
    tested = (
        detail["tested"].fillna(True).to_numpy(dtype=bool)
        if "tested" in detail
        else np.ones(n, bool)
    )
    p = detail["p_value"].to_numpy(dtype=float) if "p_value" in detail else np.ones(n)
    return np.select(
        [~tested, ~np.isfinite(rel), sig & (rel < 0), sig, p < alpha],
        [NOT_TESTED, NO_RESULT, LOWER, HIGHER, ALONE],
        NOT_SIGNIFICANT,
    ).astype(object)


def higher_is_better(metric: str) -> bool:
    """SLO attainment and goodput: a rise is an improvement (latencies: a fall is)."""
    return metric.startswith(("slo_attainment", "goodput"))


def _pct(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    v = x * 100
    return f"{v:+.1f}%" if abs(v) < 10 else f"{v:+.0f}%"


_SHORT = {LOWER: "lower", HIGHER: "higher", ALONE: "n.s. after adj.", NOT_SIGNIFICANT: "n.s.",
          NOT_TESTED: "not tested (overloaded)", NO_RESULT: "no result"}  # fmt: skip


def value_table(
    plan: Plan, detail: pd.DataFrame, metrics: list[str], axis_index: int | None = None
) -> pd.DataFrame:
    """The verdict per swept value: one row per (axis, value), one column per (architecture,
    metric). A value shared by one scenario gets its relative difference, interval and verdict;
    one shared by several gets the count of each verdict class over them (the other axes)."""
    axes, index = sweep_axes(plan)
    if not axes or detail.empty:
        return pd.DataFrame()
    d = detail[detail["metric"].isin(metrics)]
    if d.empty:
        return pd.DataFrame()
    d = d.assign(vkind=classify(d, 1 - plan.confidence))
    chosen = range(len(axes)) if axis_index is None else [axis_index]
    others = [a for a in plan.architectures if a != plan.baseline]
    unknown = (-1,) * len(axes)
    records = []
    for a in chosen:
        ax = axes[a]
        pos = np.array([index.get(s, unknown)[a] for s in d["scenario_id"]])
        keys = [pos, d["architecture"].to_numpy(), d["metric"].to_numpy()]
        counts = pd.crosstab(keys, d["vkind"].to_numpy())  # one row per (value, arch, metric)
        single = d.assign(vpos=pos).drop_duplicates(["vpos", "architecture", "metric"])
        one = {(r.vpos, r.architecture, r.metric): r for r in single.itertuples(index=False)}
        text = {}
        for key, row in zip(counts.index, counts.to_numpy(), strict=True):
            metric = key[2]
            if row.sum() == 1:
                r = one[key]
                text[key] = (
                    f"{_pct(r.rel_diff)} [{_pct(r.rel_ci_low)}, {_pct(r.rel_ci_high)}] "
                    f"{_short(r.vkind, metric)}"
                )
            else:
                n = dict(zip(counts.columns, row, strict=True))
                text[key] = " · ".join(
                    f"{int(n[k])} {_short(k, metric)}" for k in KINDS if n.get(k, 0)
                )
        for i in range(len(ax.values)):
            rec: dict[str, Any] = {"axis": ax.label(), "value": ax.tick(i)}
            for arch in others:
                for m in metrics:
                    rec[(arch, m)] = text.get((i, arch, m), "—")
            records.append(rec)
    return pd.DataFrame.from_records(records)


def _short(kind: str, metric: str) -> str:
    """`lower (faster)` for a latency, `higher (better)` for SLO attainment."""
    if kind not in (LOWER, HIGHER):
        return _SHORT[kind]
    good = (kind == HIGHER) == higher_is_better(metric)
    if metric.endswith("_s") or "_s_" in metric:
        return f"{kind} ({'faster' if good else 'slower'})"
    return f"{kind} ({'better' if good else 'worse'})" if higher_is_better(metric) else kind


def evenly(n: int, k: int) -> list[int]:
    """`k` of the indices 0..n-1, evenly spaced, both ends included."""
    if k >= n:
        return list(range(n))
    return sorted({round(j * (n - 1) / (k - 1)) for j in range(k)} if k > 1 else {0})


def thin_product(sizes: list[int], most: int) -> list[list[int]]:
    """Indices kept per dimension so that the panels (the product of the counts) number at most
    `most`: the dimension with the most values is thinned first, evenly (ends kept), so every
    dimension keeps its spread (thinning the flattened product would alias: every other panel
    of a 2 x 12 product is one value of the first dimension only)."""
    keep = list(sizes)
    while math.prod(keep) > most:
        k = max(range(len(keep)), key=lambda i: keep[i])
        rest = math.prod(keep) // keep[k]
        keep[k] = max(most // rest, min(keep[k] - 1, keep[k] // 2 + 1), 1)
    return [evenly(n, k) for n, k in zip(sizes, keep, strict=True)]


@dataclass(frozen=True)
class Grid:
    """One metric's comparisons laid out for a heat map: panel x row (y value) x column."""

    x: Axis
    y: Axis
    panels: list[str]  # each panel's title (architecture and/or the other axes' values)
    rel: np.ndarray  # relative difference, NaN where there is no result
    kind: np.ndarray  # verdict class per cell (KINDS)
    panels_total: int  # how many panels there would be without the cap


def heat_grid(plan: Plan, detail: pd.DataFrame, metric: str, max_panels: int = 12) -> Grid | None:
    """`metric`'s comparisons over the first two axes (x: the first, y: the second), one panel
    per other architecture and combination of the remaining axes' values (at most `max_panels`,
    evenly spaced in plan order). None when fewer than two axes are swept."""
    axes, index = sweep_axes(plan)
    if len(axes) < 2:
        return None
    x, y, rest = axes[0], axes[1], axes[2:]
    others = [a for a in plan.architectures if a != plan.baseline]
    sizes = [len(others)] + [len(ax.values) for ax in rest]
    total = math.prod(sizes)
    kept = thin_product(sizes, max_panels)
    combos = [(others[c[0]], tuple(c[1:])) for c in itertools.product(*kept)]
    slot = {c: k for k, c in enumerate(combos)}
    shape = (len(combos), len(y.values), len(x.values))
    rel = np.full(shape, np.nan)
    kind = np.full(shape, NO_RESULT, dtype=object)
    d = detail[detail["metric"] == metric] if len(detail) else detail
    if len(d):
        kinds = classify(d, 1 - plan.confidence)
        for r, k in zip(d.itertuples(index=False), kinds, strict=True):
            idx = index.get(r.scenario_id)
            s = slot.get((r.architecture, idx[2:])) if idx is not None else None
            if s is not None:
                rel[s, idx[1], idx[0]] = float(r.rel_diff)
                kind[s, idx[1], idx[0]] = k
    titles = []
    for arch, f in combos:
        where = ", ".join(ax.said(i) for ax, i in zip(rest, f, strict=True))
        titles.append(", ".join(t for t in (arch if len(others) > 1 else "", where) if t))
    return Grid(x, y, titles, rel, kind, total)
