"""Do the intervals hold on what users run? Coverage on studies/default.yaml and a skewed variant.

Truth: the pooled estimate of 10,000 replications (seed 999999): the average of per-replication
mean TTFTs, and the pooled P50/P90/P99 of every measured request (exact order statistics, not
sketches). Then STUDIES independent studies (seeds 1000, 1001, ...) of R = 30 replications, each
summarised as `distsim run` does (per-replication sketches; `intervals.mean_interval` and
`intervals.quantile_section`, the Woodruff interval; `run_too_short` as `runner.aggregate`
decides it); how often each 95% interval holds the truth and how often `run_too_short` fires.
Both architectures see the same requests, so the paired comparisons (`paired_comparison` on the
log ratio; pseudo-values for quantiles) are checked against the true ratio as well.

What is asserted, per cell (architecture or paired ratio x metric; docs/statistics.md has the
table):
- a cell not in AT_RISK covers: its coverage is not significantly below 0.95 (one-sided exact
  binomial test at 0.001), and `run_too_short` fires in at most 20% of its studies;
- a cell in AT_RISK (measured over 800 studies to cover below 0.93: the default study's
  disaggregated mean TTFT, 0.926, and its paired ratio, 0.929; in the skewed case the
  disaggregated mean and P99 and the ratios built on them) is flagged in nearly every study that misses: `run_too_short` in not
  significantly less than 95% of its misses (same test), and in at least 80% of all its studies
  (the flag is a property of the cell, not a coin that happens to land on the misses).

False-failure rate: with the rates measured over 800 studies (benchmarks/coverage_default.py) as
the true ones, the binomial assertion on 400 studies (it accepts coverage down to 0.9125) fails the
disaggregated P99 (0.938) with probability 1.7%, every other cell with at most 0.5%; the 20% cap
(measured at most 15%, the P99 ratio) fails with 0.3%; the at-risk assertions with < 0.01%:
about 3.5% for the module. Against the previous interval (sectioning the per-replication P99s,
0.889 on the default study) the test fails with probability 0.93. Runs ~3 minutes of CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from distsim.sim.replication import simulate_requests
from distsim.spec.study import Scenario, load_study
from distsim.stats import diagnostics
from distsim.stats.intervals import (
    mean_interval,
    paired_comparison,
    paired_quantile_comparison,
    quantile_section,
)
from distsim.stats.sketch import LogHistogram
from distsim.workload.generate import generate

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
STUDIES = 400
R = 30
TRUTH_REPLICATIONS = 10_000
QUANTILES = {"mean": None, "p50": 0.5, "p90": 0.9, "p99": 0.99}
ARCHS = ("monolithic", "disaggregated")


# The deliberately skewed case: a decode pool of one GPU (3 + 1), so long decode queues make the
# disaggregated per-replication TTFTs strongly right-skewed.
CASES: dict[str, dict[str, object]] = {
    "default": {},
    "skewed": {
        "architectures": {
            "monolithic": {"kind": "monolithic", "gpus": 4},
            "disaggregated": {"kind": "disaggregated", "prefill_gpus": 3, "decode_gpus": 1},
        }
    },
}


def scenario(seed: int, case: str) -> Scenario:
    study = load_study(ROOT / "studies" / "default.yaml")
    data = study.scenario().model_dump()
    data.update(CASES[case], seed=seed, first_token=study.first_token)
    return Scenario.model_validate(data)


def replications(sc: Scenario, count: int, raw: bool = False) -> dict[str, list]:
    """Per architecture: (mean TTFT, sketch[, raw TTFTs]) of each replication."""
    out: dict[str, list] = {a: [] for a in ARCHS}
    for r in range(count):
        requests = generate(sc.workload, sc.duration_s, sc.seed, r)
        for arch in ARCHS:
            ttft = simulate_requests(sc, arch, r, requests).ttft_s
            out[arch].append((ttft.mean(), LogHistogram.of(ttft), ttft if raw else None))
    return out


@cache
def truth(case: str) -> dict[tuple[str, str], float]:
    reps = replications(scenario(999_999, case), TRUTH_REPLICATIONS, raw=True)
    out = {}
    for arch, rs in reps.items():
        out[arch, "mean"] = float(np.mean([m for m, _, _ in rs]))
        pooled = np.concatenate([x for _, _, x in rs])
        for key, q in QUANTILES.items():
            if q is not None:
                out[arch, key] = float(np.quantile(pooled, q, method="lower"))
    return out


def summarise(rs: list, q: float | None) -> tuple[float, float, float, bool]:
    """(estimate, low, high, run_too_short) of one cell, as `runner.aggregate` computes them."""
    sketches = [s for _, s, _ in rs]
    if q is None:
        iv = mean_interval([m for m, _, _ in rs])
        return iv.estimate, iv.low, iv.high, diagnostics.mean_too_short(sketches)[0]
    sec = quantile_section(sketches, q)
    per_rep = [s.quantile(q) for s in sketches]
    half = (sec.high - sec.low) / 2
    flag = diagnostics.quantile_too_short(sec.pooled, per_rep, half, sec.tail_episodes)[0]
    return sec.pooled, sec.low, sec.high, flag


@dataclass(frozen=True)
class Cell:
    coverage: float
    flagged: float  # share of studies where run_too_short fired
    flagged_misses: float  # share of the studies that missed where it fired (nan: no miss)
    misses: int


@cache
def coverage(case: str, r: int = R) -> dict[tuple[str, str], Cell]:
    """Per (architecture or 'ratio', metric): coverage and run_too_short rates. A comparison
    counts as flagged when either side is."""
    true = truth(case)
    hit: dict[tuple[str, str], list[bool]] = {}
    fired: dict[tuple[str, str], list[bool]] = {}
    for study in range(STUDIES):
        reps = replications(scenario(1000 + study, case), r)
        for key, q in QUANTILES.items():
            for arch in ARCHS:
                _, low, high, flag = summarise(reps[arch], q)
                hit.setdefault((arch, key), []).append(low <= true[arch, key] <= high)
                fired.setdefault((arch, key), []).append(flag)
            base, other = reps[ARCHS[0]], reps[ARCHS[1]]
            if q is None:
                x, y = np.array([m for m, _, _ in base]), np.array([m for m, _, _ in other])
                c = paired_comparison(x.mean(), y.mean(), x, y)
            else:
                c = paired_quantile_comparison([s for _, s, _ in base], [s for _, s, _ in other], q)
            ratio = true[ARCHS[1], key] / true[ARCHS[0], key] - 1
            hit.setdefault(("ratio", key), []).append(c.rel_low <= ratio <= c.rel_high)
            fired.setdefault(("ratio", key), []).append(
                fired[ARCHS[0], key][-1] or fired[ARCHS[1], key][-1]
            )
    table = {}
    print(f"\ncoverage, run_too_short rate, among misses (R = {r}, {case}, {STUDIES} studies):")
    for k in hit:
        h, f = np.array(hit[k]), np.array(fired[k])
        miss = ~h
        table[k] = Cell(h.mean(), f.mean(), f[miss].mean() if miss.any() else np.nan,
                        int(miss.sum()))  # fmt: skip
        c = table[k]
        print(f"  {k[0]:>14} {k[1]:>5}  truth {true.get(k, np.nan):8.4f}  {c.coverage:.3f}  "
              f"{c.flagged:.3f}  {c.flagged_misses:.3f}")  # fmt: skip
    return table


def not_below(rate: float, level: float, n: int = STUDIES) -> bool:
    """`rate` over `n` trials is not significantly below `level` (one-sided, 0.001)."""
    return binomtest(round(rate * n), n, level, alternative="less").pvalue > 0.001


def check(table: dict[tuple[str, str], Cell], at_risk: set[tuple[str, str]]) -> None:
    for key, cell in table.items():
        if key in at_risk:
            assert cell.misses > 0, (key, cell)
            assert not_below(cell.flagged_misses, 0.95, cell.misses), (key, cell)
            assert cell.flagged >= 0.80, (key, cell)
        else:
            assert not_below(cell.coverage, 0.95), (key, cell)
            assert cell.flagged <= 0.20, (key, cell)  # a cell that covers is rarely flagged


# Cells measured (800 studies) to cover below 0.93: the mean carried by the disaggregated
# architecture's rare decode-queue bursts, and in the skewed case also its P99; the paired
# ratios built on them.
AT_RISK = {
    "default": {("disaggregated", "mean"), ("ratio", "mean")},
    "skewed": {(side, key) for side in ("disaggregated", "ratio") for key in ("mean", "p99")},
}


def test_default_study_coverage_and_run_too_short() -> None:
    check(coverage("default"), AT_RISK["default"])


def test_skewed_study_coverage() -> None:
    """A decode pool of one GPU (3 + 1): long decode queues make the disaggregated side's
    per-replication TTFTs strongly skewed; its mean and P99 rest on a few bursts per study, and
    run_too_short says so. The monolithic side keeps its coverage and is rarely flagged."""
    check(coverage("skewed"), AT_RISK["skewed"])
