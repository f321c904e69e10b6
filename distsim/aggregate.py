"""From replication rows to the study's answer: estimates, intervals and paired comparisons.

Pure functions of the rows (the published `replications.parquet` layout) and the plan. The
statistics themselves live in `distsim.stats`.

- summary: per scenario x architecture x metric, the estimate and its interval at the study's
  confidence over the replications present (`n` of them).
- comparisons: per scenario x non-baseline architecture x metric both have, the paired difference
  to the baseline over the replications both have, its interval, the relative difference, the
  paired-t p-value and whether it is significant at 1 - confidence.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from distsim import stats
from distsim.design import Plan
from distsim.store import CORE_COLUMNS

SUMMARY_VALUE_COLUMNS = ["architecture", "metric", "estimate", "ci_low", "ci_high", "n"]
COMPARISON_VALUE_COLUMNS = [
    "architecture", "baseline", "metric", "baseline_estimate", "estimate", "diff",
    "diff_ci_low", "diff_ci_high", "rel_diff", "p_value", "significant",
]  # fmt: skip
# Extra columns kept in memory for the terminal report (not written to comparisons.csv).
COMPARISON_DETAIL_COLUMNS = ["rel_ci_low", "rel_ci_high", "n"]

# Metrics in the order a reader wants them; pool metrics and anything new follow.
_METRIC_ORDER = [
    "ttft_mean_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "ttft_max_s",
    "e2e_mean_s", "e2e_p99_s", "n_requests",
]  # fmt: skip


def summary_columns(plan: Plan) -> list[str]:
    return ["scenario_id", *plan.param_paths, *SUMMARY_VALUE_COLUMNS]


def comparison_columns(plan: Plan) -> list[str]:
    return ["scenario_id", *plan.param_paths, *COMPARISON_VALUE_COLUMNS]


def metric_columns(rows: pd.DataFrame, plan: Plan) -> list[str]:
    """Metric columns of the rows, in reading order."""
    skip = set(CORE_COLUMNS) | set(plan.param_paths)
    present = [c for c in rows.columns if c not in skip]
    known = [m for m in _METRIC_ORDER if m in present]
    return known + [m for m in present if m not in known]


def _values(cell: pd.DataFrame, metric: str, replications: np.ndarray) -> np.ndarray:
    """The metric per replication index (NaN where the replication is missing)."""
    out = np.full(replications.size, np.nan)
    if metric in cell.columns:
        series = cell.set_index("replication")[metric].astype("float64")
        out = series.reindex(replications).to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def summarize(rows: pd.DataFrame, plan: Plan) -> pd.DataFrame:
    """The summary table (see module docstring), in plan order."""
    records: list[dict[str, Any]] = []
    if rows.empty:
        return pd.DataFrame(columns=summary_columns(plan))
    metrics = metric_columns(rows, plan)
    for ps in plan.scenarios:
        srows = rows[rows["scenario_id"] == ps.id]
        for arch in plan.architectures:
            cell = srows[srows["architecture"] == arch]
            if cell.empty:
                continue
            for metric in metrics:
                values = cell[metric].to_numpy(dtype=np.float64, na_value=np.nan)
                if not np.isfinite(values).any():
                    continue  # e.g. a pool this architecture does not have
                iv = stats.mean_interval(values, plan.confidence)
                records.append(
                    {
                        "scenario_id": ps.id,
                        **ps.params,
                        "architecture": arch,
                        "metric": metric,
                        "estimate": iv.estimate,
                        "ci_low": iv.low,
                        "ci_high": iv.high,
                        "n": iv.n,
                    }
                )
    return pd.DataFrame(records, columns=summary_columns(plan))


def compare(rows: pd.DataFrame, plan: Plan, *, detail: bool = False) -> pd.DataFrame:
    """The comparisons table; with `detail`, also the relative interval and the pair count."""
    columns = comparison_columns(plan) + (COMPARISON_DETAIL_COLUMNS if detail else [])
    if rows.empty:
        return pd.DataFrame(columns=columns)
    records: list[dict[str, Any]] = []
    metrics = metric_columns(rows, plan)
    reps = np.arange(plan.replications)
    for ps in plan.scenarios:
        srows = rows[rows["scenario_id"] == ps.id]
        base = srows[srows["architecture"] == plan.baseline]
        if base.empty:
            continue
        for arch in plan.architectures:
            if arch == plan.baseline:
                continue
            cell = srows[srows["architecture"] == arch]
            if cell.empty:
                continue
            for metric in metrics:
                x, y = _values(base, metric, reps), _values(cell, metric, reps)
                if not (np.isfinite(x) & np.isfinite(y)).any():
                    continue  # a metric only one side has (pool metrics)
                d = stats.paired_difference(x, y, plan.confidence)
                record = {
                    "scenario_id": ps.id,
                    **ps.params,
                    "architecture": arch,
                    "baseline": plan.baseline,
                    "metric": metric,
                    "baseline_estimate": d.baseline_estimate,
                    "estimate": d.estimate,
                    "diff": d.diff,
                    "diff_ci_low": d.diff_low,
                    "diff_ci_high": d.diff_high,
                    "rel_diff": d.rel_diff,
                    "p_value": d.p_value,
                    "significant": d.significant,
                }
                if detail:
                    record.update(rel_ci_low=d.rel_low, rel_ci_high=d.rel_high, n=d.n)
                records.append(record)
    return pd.DataFrame(records, columns=columns)


def public_comparisons(detailed: pd.DataFrame, plan: Plan) -> pd.DataFrame:
    """The comparisons.csv layout of a detailed comparisons table."""
    return detailed[comparison_columns(plan)].reset_index(drop=True)
