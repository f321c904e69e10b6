"""Ranking and selection: which candidate is best, with a stated probability of being right.

The procedure is Kim and Nelson's fully sequential KN (Kim & Nelson 2001, ACM TOMACS 11(3);
their chapter "Selecting the best system", Handbooks in OR & MS vol. 13, 2006), with
Andradottir & Kim's (2010) triangular feasibility checks for constraints. Picture k candidates
run on the same replications (common random numbers: replication j of every candidate sees the
same requests). For each pair (i, l) the running sum of paired differences D_il(r) = sum_{j<=r}
(Z_lj - Z_ij) is watched against a triangle that closes at r = h^2 S_il^2 / delta^2:

    i is eliminated by l at stage r when D_il(r) > max(0, h^2 S_il^2 / (2 delta) - delta r / 2)

where S_il^2 is the variance of Z_l - Z_i over the first n0 replications and
h^2 = (n0 - 1) ((2 beta)^(-2 / (n0 - 1)) - 1) with beta = alpha / (k - 1). When the best is
ahead of every other by at least delta, the chance that it is ever eliminated is at most
alpha (Bonferroni over the k - 1 pairs, each bounded through the Brownian-motion exit of the
triangle, Fabian 1974). The bound holds for any covariance between candidates, so common random
numbers are allowed (and make S_il^2 small), and for observations taken at any subset of the
stages (Jennison, Johnstone & Turnbull 1980: looking less often only lowers the wrong-exit
probability of a triangular region), so replications may come in waves.

**Relative indifference.** The user states `indifference` rho: within a factor 1 + rho of the
best counts as equally good. The procedure works on Z = log X (maximise) or Z = -log X
(minimise) with delta = log(1 + rho), so "the best is more than rho ahead" is exactly "its
geometric-mean ratio to every other exceeds 1 + rho", and delta needs no estimate of the scale.
The geometric mean over replications of a per-replication average (e.g. each run's mean E2E)
differs from its arithmetic mean by about CV^2 / 2 (CV: its coefficient of variation across
replications, typically a few percent), the same to first order for every candidate.

**Constraints.** `metric at_least q` (or `at_most`) is decided on the original scale by the same
triangle on sum_j (X_j - q) (sign flipped for at_most) with tolerance eps = rho |q|: a candidate
whose true mean is more than eps on the right side is declared feasible, one more than eps on
the wrong side infeasible, each with error at most its share of alpha; inside the tolerance
either decision is acceptable. With constraints alpha is split in half: one half for the
selection, the other shared by the k x m feasibility checks. A candidate can eliminate others
only once every constraint of it is declared feasible.

Everything here is pure: `replay` re-derives the whole run of the procedure from the
per-replication values, so a resumed selection (or a second look at stored rows) reaches the
same decisions as the run that produced them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Goal = Literal["minimize", "maximize"]
Bound = Literal["at_least", "at_most"]


def eta(beta: float, n0: int) -> float:
    """KN's constant for a per-pair error `beta` and first stage of `n0` replications."""
    if not 0 < beta < 0.5:
        raise ValueError("a per-pair error must lie in (0, 0.5)")
    if n0 < 2:
        raise ValueError("the first stage needs at least 2 replications")
    return 0.5 * ((2.0 * beta) ** (-2.0 / (n0 - 1)) - 1.0)


def h_squared(beta: float, n0: int) -> float:
    """h^2 = 2 eta (n0 - 1): the triangle's height in units of S^2 / delta."""
    return 2.0 * eta(beta, n0) * (n0 - 1)


def boundary(h2: float, s2: float, delta: float, r: int) -> float:
    """Half-width of the triangle on the summed differences after r replications."""
    return max(0.0, h2 * s2 / (2.0 * delta) - delta * r / 2.0)


def closing_stage(h2: float, s2: float, delta: float) -> float:
    """The stage at which the triangle of a pair closes (no decision can wait longer)."""
    return h2 * s2 / delta**2


def scores(values: np.ndarray, goal: Goal) -> np.ndarray:
    """Z = log X (maximise) or -log X (minimise): larger is better, differences are log ratios.

    Raises ValueError on a value that is not positive (a relative indifference needs a scale)."""
    x = np.asarray(values, dtype=np.float64)
    finite = x[np.isfinite(x)]
    if finite.size and np.any(finite <= 0):
        raise ValueError("the objective must be positive in every replication")
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.log(x)
    return z if goal == "maximize" else -z


@dataclass(frozen=True)
class Constraint:
    metric: str
    bound: Bound
    threshold: float


@dataclass(frozen=True)
class Settings:
    """What the procedure needs besides the data."""

    goal: Goal
    indifference: float  # relative, rho
    confidence: float
    n0: int  # first-stage replications
    stage: int = 5  # replications added to every contender between looks
    max_replications: int = 1000
    constraints: tuple[Constraint, ...] = ()

    @property
    def delta(self) -> float:
        return math.log1p(self.indifference)

    def alphas(self, k: int) -> tuple[float, float]:
        """(per-pair error of the selection, per-check error of a feasibility check)."""
        alpha = 1.0 - self.confidence
        m = len(self.constraints)
        select = alpha / 2.0 if m else alpha
        pair = select / max(k - 1, 1)
        check = (alpha / 2.0) / (k * m) if m else 0.0
        return pair, check


@dataclass
class Decision:
    """Where the procedure stands after replaying the data.

    `needs` maps each candidate still to be sampled to the replication count it needs next;
    empty when `done`. `eliminated[i] = (l, r)`: i fell to l at stage r. `infeasible[i] =
    (metric, r)`. `feasible[i]` lists the constraints declared met. `contenders` are those left
    (one when the procedure ends normally; several when they are identical or tied at the
    closing stage; any number when the cap stopped it, `capped`). `stage` is the last look.
    """

    contenders: list[str]
    eliminated: dict[str, tuple[str, int]] = field(default_factory=dict)
    infeasible: dict[str, tuple[str, int]] = field(default_factory=dict)
    feasible: dict[str, list[str]] = field(default_factory=dict)
    needs: dict[str, int] = field(default_factory=dict)
    done: bool = False
    capped: bool = False
    stage: int = 0
    closing: dict[tuple[str, str], float] = field(default_factory=dict)


def complete_prefix(values: np.ndarray) -> int:
    """How many leading replications have a finite value."""
    ok = np.isfinite(np.asarray(values, dtype=np.float64))
    return int(ok.size if ok.all() else np.argmin(ok))


def _variance(x: np.ndarray) -> float:
    return 0.0 if np.all(x == x[0]) else float(np.var(x, ddof=1))


def replay(
    objective: Mapping[str, np.ndarray],
    constraint_values: Mapping[str, Mapping[str, np.ndarray]],
    settings: Settings,
) -> Decision:
    """Run the procedure over the data available; say who is out and what is needed next.

    `objective[name]` holds the candidate's objective per replication (index = replication;
    NaN or absent = not simulated). `constraint_values[name][metric]` likewise for each
    constraint's metric. Candidates are taken in the mapping's order (ties keep it).
    """
    names = list(objective)
    k = len(names)
    n0, delta = settings.n0, settings.delta
    pair_beta, check_beta = settings.alphas(k)
    z = {a: scores(objective[a], settings.goal) for a in names}
    have = {a: complete_prefix(z[a]) for a in names}
    for a in names:
        for c in settings.constraints:
            have[a] = min(have[a], complete_prefix(constraint_values[a][c.metric]))
    out = Decision(contenders=list(names))
    if k == 0:
        out.done = True
        return out
    short = {a: n0 for a in names if have[a] < n0}
    if short:
        out.needs = short
        return out
    h2_pair = h_squared(pair_beta, n0) if k > 1 else 0.0
    h2_check = h_squared(check_beta, n0) if settings.constraints else 0.0
    s2 = {
        (i, j): _variance(z[j][:n0] - z[i][:n0]) for i in names for j in names if i != j
    }  # fmt: skip
    for (i, j), v in s2.items():
        out.closing[(i, j)] = closing_stage(h2_pair, v, delta) if k > 1 else 0.0
    undecided = {a: [c for c in settings.constraints] for a in names}
    check_s2 = {
        (a, c.metric): _variance(np.asarray(constraint_values[a][c.metric][:n0], dtype=float))
        for a in names
        for c in settings.constraints
    }
    for a in names:
        out.feasible[a] = []
    r = n0
    while True:
        out.stage = r
        # feasibility checks
        for a in list(out.contenders):
            for c in list(undecided[a]):
                x = np.asarray(constraint_values[a][c.metric][:r], dtype=np.float64)
                g = x - c.threshold if c.bound == "at_least" else c.threshold - x
                total = float(g.sum())
                eps = settings.indifference * abs(c.threshold) or settings.indifference
                b = boundary(h2_check, check_s2[(a, c.metric)], eps, r)
                if total > b or (b == 0.0 and total >= 0.0):
                    undecided[a].remove(c)
                    out.feasible[a].append(c.metric)
                elif total < -b or b == 0.0:
                    undecided[a].remove(c)
                    out.infeasible[a] = (c.metric, r)
                    out.contenders.remove(a)
                    break
        # KN screening among the contenders
        old = list(out.contenders)
        sums = {a: float(z[a][:r].sum()) for a in old}
        for i in old:
            for j in old:
                if j == i or undecided[j]:
                    continue
                if sums[j] - sums[i] > boundary(h2_pair, s2[(i, j)], delta, r):
                    out.eliminated[i] = (j, r)
                    out.contenders.remove(i)
                    break
        left = out.contenders
        all_feasible = all(not undecided[a] for a in left)
        closed = all(
            boundary(h2_pair, s2[(i, j)], delta, r) == 0.0 for i in left for j in left if i != j
        )
        if not left or (all_feasible and (len(left) == 1 or closed)):
            out.done = True
            return out
        if r >= settings.max_replications:
            out.done, out.capped = True, True
            return out
        nxt = min(r + settings.stage, settings.max_replications)
        short = {a: nxt for a in left if have[a] < nxt}
        if short:
            out.needs = short
            return out
        r = nxt


# ---------------------------------------------------------------- the ranking after the run

Status = Literal["best", "tied", "eliminated", "unstable", "infeasible"]


@dataclass(frozen=True)
class Ranked:
    """One candidate's line of the ranking.

    `estimate`/`ci_low`/`ci_high`: its objective's mean over its replications with a Student-t
    interval at the study's confidence. `rel_worse`/`rel_low`/`rel_high`: how much worse than
    the best it is (X/X_best - 1 when minimising, X_best/X - 1 when maximising; geometric mean
    over the common replications), with a simultaneous interval (confidence 1 - alpha/(k-1)
    each); NaN for the best and for candidates set apart.
    """

    architecture: str
    status: Status
    estimate: float
    ci_low: float
    ci_high: float
    replications: int
    rel_worse: float = math.nan
    rel_low: float = math.nan
    rel_high: float = math.nan
    note: str = ""


def _t(n: int, confidence: float) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2.0, n - 1))


def mean_ci(values: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """Mean with its Student-t interval (NaN ends below two values; exact for equal values)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, math.nan, math.nan
    m = float(x.mean())
    if x.size < 2:
        return m, math.nan, math.nan
    h = (
        0.0
        if np.all(x == x[0])
        else _t(x.size, confidence) * float(x.std(ddof=1)) / math.sqrt(x.size)
    )
    return m, m - h, m + h


def relative_worse(
    best: np.ndarray, other: np.ndarray, goal: Goal, confidence: float
) -> tuple[float, float, float]:
    """How much worse `other` is than `best` over their common replications, with interval:
    exp(mean(Z_best - Z_other)) - 1 and the t interval of that mean, mapped the same way."""
    zb, zo = scores(best, goal), scores(other, goal)
    n = min(complete_prefix(zb), complete_prefix(zo))
    d = zb[:n] - zo[:n]
    if n == 0:
        return math.nan, math.nan, math.nan
    m = float(d.mean())
    if n < 2:
        return float(np.expm1(m)), math.nan, math.nan
    h = 0.0 if np.all(d == d[0]) else _t(n, confidence) * float(d.std(ddof=1)) / math.sqrt(n)
    return float(np.expm1(m)), float(np.expm1(m - h)), float(np.expm1(m + h))


def rank(
    decision: Decision,
    objective: Mapping[str, np.ndarray],
    settings: Settings,
    unstable: Sequence[str] = (),
    unstable_values: Mapping[str, np.ndarray] | None = None,
    unstable_notes: Mapping[str, str] | None = None,
) -> list[Ranked]:
    """The ranking: best first, then tied, eliminated, infeasible, unstable.

    Among the last contenders the best has the largest mean score (several contenders remain
    only when identical, tied at the closing stage, or capped). Another candidate is `tied`
    when its simultaneous interval of relative disadvantage lies below the indifference (shown
    to be within it; an identical candidate gives [0, 0]); otherwise `eliminated`.
    """
    conf = settings.confidence
    names = list(objective)
    k = len(names)
    out: list[Ranked] = []
    best: str | None = None
    if decision.contenders:
        z = {a: scores(objective[a], settings.goal) for a in decision.contenders}
        n = min(complete_prefix(z[a]) for a in decision.contenders)
        best = max(decision.contenders, key=lambda a: float(z[a][:n].mean()))
    pair_conf = 1.0 - settings.alphas(k)[0] if k > 1 else conf

    def line(a: str, status: Status, values: np.ndarray, note: str = "") -> Ranked:
        n = complete_prefix(np.asarray(values, dtype=float))
        est, lo, hi = mean_ci(np.asarray(values, dtype=float)[:n], conf)
        worse = (math.nan,) * 3
        if best is not None and a != best and status in ("tied", "eliminated"):
            worse = relative_worse(objective[best], values, settings.goal, pair_conf)
        return Ranked(a, status, est, lo, hi, n, *worse, note=note)

    others: list[Ranked] = []
    for a in names:
        if a == best:
            continue
        if a in decision.infeasible:
            continue
        r = line(a, "eliminated", objective[a])
        tied = math.isfinite(r.rel_high) and r.rel_high < settings.indifference
        if a in decision.contenders or tied:
            r = Ranked(**{**r.__dict__, "status": "tied"})
        others.append(r)
    if best is not None:
        note = "capped before the procedure ended" if decision.capped else ""
        out.append(line(best, "best", objective[best], note))
    order = {"tied": 0, "eliminated": 1}
    others.sort(key=lambda r: (order[r.status], r.rel_worse if math.isfinite(r.rel_worse) else 1e9))
    out.extend(others)
    for a, (metric, _) in decision.infeasible.items():
        out.append(line(a, "infeasible", objective[a], note=f"{metric}"))
    for a in unstable:
        values = (unstable_values or {}).get(a, np.array([]))
        note = (unstable_notes or {}).get(a) or "overloaded"
        out.append(line(a, "unstable", values, note=note))
    return out
