"""The seed summary's single 300 s run next to distsim's replicated estimates.

    python -m distsim run studies/seed_summary.yaml --out results/seed_summary
    python benchmarks/seed_single_runs.py results/seed_summary

The seed (../shared/seed/SEED.md, "Sample Results (300s simulation)") reported one run per
architecture. Its numbers are copied below. For each TTFT metric this prints, as Markdown tables:

- the seed's single-run value; distsim's estimate and 95% interval over all replications;
- the spread of single 300 s runs: the 5th-95th percentile of the per-replication values (each
  replication is one 300 s run, the same experiment the seed ran once);
- how often one 300 s run lands at least as far from distsim's estimate as the seed's did
  (the share of replications with |run - estimate| >= |seed - estimate|);
- the same for the relative difference disaggregated vs monolithic, with the share of single runs
  that would show a gap at least as large as the seed's.

Prints figures only; reads the stored results (nothing is simulated).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from distsim.report.terminal import metric_label
from distsim.runner.study import load_result

# The seed's single-run numbers (../shared/seed/SEED.md, "Sample Results (300s simulation)").
_SEED_METRICS = ("ttft_mean_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s")
SEED = {
    "monolithic": dict(zip(_SEED_METRICS, (0.088, 0.055, 0.203, 0.552), strict=True)),
    "disaggregated": dict(zip(_SEED_METRICS, (0.122, 0.066, 0.281, 0.829), strict=True)),
}
SEED_REL = {"ttft_mean_s": 0.377, "ttft_p50_s": 0.205, "ttft_p90_s": 0.381, "ttft_p99_s": 0.502}
METRICS = ("ttft_mean_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s")


def _ms(x: float) -> str:
    return f"{x * 1e3:.0f}" if x >= 0.1 else f"{x * 1e3:.1f}"


def _pct(x: float) -> str:
    return f"{x * 100:+.0f}%" if abs(x) >= 0.1 else f"{x * 100:+.1f}%"


def share_as_far(values: np.ndarray, centre: float, seed: float) -> float:
    """Share of single runs at least as far from `centre` as `seed` is."""
    return float(np.mean(np.abs(values - centre) >= abs(seed - centre)))


def main(out_dir: Path) -> None:
    res = load_result(out_dir)
    rows, summary, detail = res.replications, res.summary, res.comparisons_detail
    n = rows.groupby("architecture")["replication"].nunique().to_dict()
    print(f"{out_dir}: {n} replications of 300 s per architecture")
    print()
    print(
        "| architecture | metric | seed (1 run), ms | distsim estimate [95% CI], ms | "
        "single 300 s runs, 5th-95th pct, ms | runs as far off as the seed's |"
    )
    print("|---|---|---|---|---|---|")
    for arch in ("monolithic", "disaggregated"):
        per_rep = rows[rows["architecture"] == arch]
        for metric in METRICS:
            s = summary[(summary["architecture"] == arch) & (summary["metric"] == metric)].iloc[0]
            values = per_rep[metric].to_numpy(dtype=float)
            lo, hi = np.percentile(values, [5, 95])
            seed = SEED[arch][metric]
            far = share_as_far(values, float(s["estimate"]), seed)
            print(
                f"| {arch} | {metric_label(metric)} | {_ms(seed)} | {_ms(s['estimate'])} "
                f"[{_ms(s['ci_low'])}, {_ms(s['ci_high'])}] | {_ms(lo)} - {_ms(hi)} | "
                f"{far * 100:.1f}% |"
            )
    print()
    print(
        "| metric | seed: disaggregated vs monolithic | distsim [95% CI] | single runs, "
        "5th-95th pct | runs as far off as the seed's | runs with a gap >= the seed's |"
    )
    print("|---|---|---|---|---|---|")
    mono = rows[rows["architecture"] == "monolithic"].set_index("replication")
    dis = rows[rows["architecture"] == "disaggregated"].set_index("replication")
    common = mono.index.intersection(dis.index)
    for metric in METRICS:
        c = detail[detail["metric"] == metric].iloc[0]
        rel = dis.loc[common, metric].to_numpy(float) / mono.loc[common, metric].to_numpy(float) - 1
        lo, hi = np.percentile(rel, [5, 95])
        seed = SEED_REL[metric]
        far = share_as_far(rel, float(c["rel_diff"]), seed)
        above = float(np.mean(rel >= seed))
        print(
            f"| {metric_label(metric)} | {_pct(seed)} | {_pct(c['rel_diff'])} "
            f"[{_pct(c['rel_ci_low'])}, {_pct(c['rel_ci_high'])}] | {_pct(lo)} to {_pct(hi)} | "
            f"{far * 100:.1f}% | {above * 100:.1f}% |"
        )
    flags = summary[summary["metric"].isin(METRICS)]["flags"].fillna("")
    print()
    print(f"flags on these rows: {sorted({f for v in flags for f in v.split(';') if f}) or 'none'}")
    print("single-run P99 TTFT (ms): min / median / max, and the average of single-run P99s")
    print("against the pooled P99 (a single short run's P99 is biased low):")
    for arch in ("monolithic", "disaggregated"):
        v = rows.loc[rows["architecture"] == arch, "ttft_p99_s"].to_numpy(float)
        pooled = summary[(summary["architecture"] == arch) & (summary["metric"] == "ttft_p99_s")]
        est = float(pooled["estimate"].iloc[0])
        print(
            f"  {arch}: {_ms(v.min())} / {_ms(float(np.median(v)))} / {_ms(v.max())}; "
            f"average {_ms(v.mean())} vs pooled {_ms(est)} ({_pct(v.mean() / est - 1)}); "
            f"single runs below the pooled P99: {np.mean(v < est) * 100:.0f}%"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, nargs="?", default=Path("results/seed_summary"))
    args = parser.parse_args()
    if not args.out_dir.is_dir():
        sys.exit(f"error: {args.out_dir}: no such results folder (run the study first)")
    pd.set_option("display.width", 120)
    main(args.out_dir)
