"""Coverage of distsim's 95% intervals on studies/default.yaml (and a skewed variant), before and
after the Woodruff quantile intervals, with the share of studies `run_too_short` flags.

    python benchmarks/coverage_default.py --studies 800             # the docs' table
    python benchmarks/coverage_default.py --case skewed --studies 800

Truth: the pooled estimate of `--truth` replications (seed 999999; exact order statistics). Then
`--studies` independent studies (seeds 1000, 1001, ...) of `--replications` replications, each
summarised from per-replication sketches as `distsim run` does. Methods, per cell:

- before: quantiles by sectioning the per-replication quantiles on the log scale, pooled x
  exp(± t sd(x_r / pooled) / sqrt(R)); `run_too_short` from the pooled-bias rule alone;
- after: the Woodruff interval (`intervals.quantile_section`); `run_too_short` as
  `runner.aggregate` decides it (bias rule, too few tail episodes, or a mean carried by its tail).

Means use the same interval in both (`intervals.mean_interval`). Prints a Markdown table:
coverage, the share of studies flagged, and the share of the misses flagged. Simulation costs
about 1 ms per replication and architecture; the summaries about as much again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from distsim.sim.replication import simulate_requests
from distsim.spec.study import Scenario, load_study
from distsim.stats import diagnostics
from distsim.stats.intervals import (
    mean_interval,
    paired_comparison,
    paired_quantile_comparison,
    quantile_section,
    sectioning_interval,
)
from distsim.stats.sketch import LogHistogram, per_replication_quantiles
from distsim.workload.generate import generate

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("monolithic", "disaggregated")
METRICS = {"mean": None, "P50": 0.5, "P90": 0.9, "P99": 0.99}
CASES: dict[str, dict[str, object]] = {
    "default": {},
    "skewed": {  # a one-GPU decode pool: strongly skewed disaggregated TTFTs
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


def ttfts(sc: Scenario, r: int) -> dict[str, np.ndarray]:
    requests = generate(sc.workload, sc.duration_s, sc.seed, r)
    return {a: simulate_requests(sc, a, r, requests).ttft_s for a in ARCHS}


def truth(case: str, replications: int) -> dict[tuple[str, str], float]:
    sc = scenario(999_999, case)
    runs = [ttfts(sc, r) for r in range(replications)]
    out = {}
    for a in ARCHS:
        out[a, "mean"] = float(np.mean([x[a].mean() for x in runs]))
        pooled = np.concatenate([x[a] for x in runs])
        for key, q in METRICS.items():
            if q is not None:
                out[a, key] = float(np.quantile(pooled, q, method="lower"))
    return out


def cell(sketches: list[LogHistogram], q: float | None) -> dict[str, tuple[float, float, bool]]:
    """method -> (low, high, run_too_short) of one architecture's cell."""
    if q is None:
        iv = mean_interval([s.mean for s in sketches])
        flag = diagnostics.mean_too_short(sketches)[0]
        return {"before": (iv.low, iv.high, False), "after": (iv.low, iv.high, flag)}
    per_rep = per_replication_quantiles(sketches, q)
    sec = quantile_section(sketches, q)
    old = sectioning_interval(sec.pooled, per_rep)
    half = (sec.high - sec.low) / 2
    new_flag = diagnostics.quantile_too_short(sec.pooled, per_rep, half, sec.tail_episodes)[0]
    old_flag = diagnostics.quantile_run_too_short(sec.pooled, per_rep, old.half_width)
    return {"before": (old.low, old.high, old_flag), "after": (sec.low, sec.high, new_flag)}


def ratio_cell(
    base: list[LogHistogram], other: list[LogHistogram], q: float | None
) -> dict[str, tuple[float, float]]:
    """method -> relative-difference interval of other vs base (paired)."""
    if q is None:
        x, y = np.array([s.mean for s in base]), np.array([s.mean for s in other])
        c = paired_comparison(x.mean(), y.mean(), x, y)
        return {"before": (c.rel_low, c.rel_high), "after": (c.rel_low, c.rel_high)}
    per_b, per_o = per_replication_quantiles(base, q), per_replication_quantiles(other, q)
    b0, o0 = quantile_section(base, q).pooled, quantile_section(other, q).pooled
    old = paired_comparison(b0, o0, per_b, per_o)
    new = paired_quantile_comparison(base, other, q)
    return {"before": (old.rel_low, old.rel_high), "after": (new.rel_low, new.rel_high)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(CASES), default="default")
    parser.add_argument("--studies", type=int, default=800)
    parser.add_argument("--replications", type=int, default=30)
    parser.add_argument("--truth", type=int, default=10_000)
    args = parser.parse_args()
    true = truth(args.case, args.truth)
    hits: dict[tuple[str, str, str], list[bool]] = {}
    flags: dict[tuple[str, str, str], list[bool]] = {}
    for study in range(args.studies):
        sc = scenario(1000 + study, args.case)
        runs = [ttfts(sc, r) for r in range(args.replications)]
        sk = {a: [LogHistogram.of(x[a]) for x in runs] for a in ARCHS}
        for key, q in METRICS.items():
            fired = {}
            for a in ARCHS:
                for method, (low, high, flag) in cell(sk[a], q).items():
                    hits.setdefault((a, key, method), []).append(low <= true[a, key] <= high)
                    flags.setdefault((a, key, method), []).append(flag)
                    fired[a, method] = flag
            rel = true[ARCHS[1], key] / true[ARCHS[0], key] - 1
            for method, (low, high) in ratio_cell(sk[ARCHS[0]], sk[ARCHS[1]], q).items():
                hits.setdefault(("ratio", key, method), []).append(low <= rel <= high)
                both = fired[ARCHS[0], method] or fired[ARCHS[1], method]
                flags.setdefault(("ratio", key, method), []).append(both)
    print(
        f"\n{args.case}: {args.studies} studies of R = {args.replications} "
        f"(seeds 1000-{999 + args.studies}); truth from {args.truth:,} replications\n"
    )
    print("| cell | metric | truth | coverage before | after | flagged before | after "
          "| flagged among misses, after |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for side in (*ARCHS, "ratio"):
        for key in METRICS:
            h = {m: np.array(hits[side, key, m]) for m in ("before", "after")}
            f = {m: np.array(flags[side, key, m]) for m in ("before", "after")}
            miss = ~h["after"]
            among = f"{f['after'][miss].mean():.2f} of {miss.sum()}" if miss.any() else "-"
            t = true.get((side, key))
            shown = f"{t:.4f} s" if t is not None else "ratio"
            print(
                f"| {side} | {key} | {shown} | {h['before'].mean():.3f} | "
                f"{h['after'].mean():.3f} | {f['before'].mean():.2f} | {f['after'].mean():.2f} "
                f"| {among} |"
            )


if __name__ == "__main__":
    main()
