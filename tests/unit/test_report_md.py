"""report.md, its plots and summary.json for a one-scenario study and a sweep (no Ray: rows come
from the task function a worker runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from distsim_testkit import study_dict

from distsim.runner.plan import plan_study
from distsim.runner.store import with_params
from distsim.runner.study import StudyResult, aggregate_rows, missing_units, write_report_files
from distsim.runner.task import run_batch
from distsim.spec.study import validate_study

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def result_of(spec: dict, out_dir: Path) -> StudyResult:
    study = validate_study(spec)
    plan = plan_study(study)
    batch = run_batch({ps.id: ps.scenario for ps in plan.scenarios}, missing_units(None, plan))
    rows = with_params(pd.DataFrame.from_records(batch.rows), plan)
    summary, comparisons, detail = aggregate_rows(rows, plan)
    return StudyResult(study, plan, out_dir, rows, summary, comparisons, detail)


@pytest.mark.parametrize(
    "changes",
    [{}, {"sweep": {"workload.arrival.rate_rps": [1.0, 2.0, 3.0]}}],
    ids=["one-scenario", "sweep"],
)
def test_report_files(tmp_path: Path, changes: dict) -> None:
    result = result_of(study_dict(replications=4, duration_s=60, **changes), tmp_path)
    report = write_report_files(result, tables=True)
    text = report.read_text()
    for ps in result.plan.scenarios:
        assert ps.id in text
        assert (tmp_path / f"cdf_{ps.id}.png").read_bytes().startswith(PNG_MAGIC)
    assert (tmp_path / "forest.png").read_bytes().startswith(PNG_MAGIC)
    sweeps = sorted(tmp_path.glob("sweep_*.png"))
    assert bool(sweeps) == bool(changes)
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in sweeps)
    data = json.loads((tmp_path / "summary.json").read_text())
    assert len(data["summary"]) == len(result.summary)
    assert {"p_adjusted", "significant"} <= set(data["comparisons"][0])
    csv = pd.read_csv(tmp_path / "comparisons.csv")
    assert "p_adjusted" in csv.columns
    assert "flags" in pd.read_csv(tmp_path / "summary.csv").columns


def test_unstable_scenario_flagged_and_untested(tmp_path: Path) -> None:
    spec = study_dict(
        replications=3, duration_s=60, sweep={"workload.arrival.rate_rps": [2.0, 12.0]}
    )
    result = result_of(spec, tmp_path)
    unstable_id = result.plan.scenarios[1].id
    s = result.summary
    flags = s.loc[s["scenario_id"] == unstable_id, "flags"]
    assert flags.str.contains("unstable").all()
    assert not s.loc[s["scenario_id"] != unstable_id, "flags"].str.contains("unstable").any()
    c = result.comparisons
    untested = c[c["scenario_id"] == unstable_id]
    assert untested["p_adjusted"].isna().all() and not untested["significant"].any()
    assert c.loc[c["scenario_id"] != unstable_id, "p_adjusted"].notna().all()
    text = write_report_files(result).read_text()
    assert "unstable" in text and "disaggregated is overloaded" in text and "not tested: " in text


@pytest.mark.slow  # ~4 s; the 4-scenario sweep test keeps the quick subset's check of the files
def test_a_large_sweep_writes_a_bounded_number_of_files_and_one_terminal_table(
    tmp_path: Path,
) -> None:
    from distsim.report.markdown import MAX_DISTRIBUTION_PLOTS
    from distsim.report.terminal import LARGE_SWEEP_SCENARIOS

    rates = [0.5 + 0.25 * i for i in range(LARGE_SWEEP_SCENARIOS + 8)]
    spec = study_dict(replications=2, duration_s=30, warmup_s=3,
                      sweep={"workload.arrival.rate_rps": rates})  # fmt: skip
    result = result_of(spec, tmp_path)
    write_report_files(result, tables=True)
    cdfs = sorted(p.name for p in tmp_path.glob("cdf_*.png"))
    assert 2 <= len(cdfs) <= MAX_DISTRIBUTION_PLOTS
    ids = [ps.id for ps in result.plan.scenarios]
    # The sweep's ends and the extremes of the relative P99 TTFT difference are among them.
    p99 = result.comparisons_detail[result.comparisons_detail["metric"] == "ttft_p99_s"]
    extremes = {p99.loc[p99["rel_diff"].idxmin(), "scenario_id"],
                p99.loc[p99["rel_diff"].idxmax(), "scenario_id"]}  # fmt: skip
    assert {f"cdf_{sid}.png" for sid in {ids[0], ids[-1], *extremes}} == set(cdfs)
    files_before = len(list(tmp_path.iterdir()))
    # The terminal: one summary, no block per scenario.
    text = result.report()
    assert "scenario " + ids[1] not in text
    p99_line = next(line for line in text.splitlines() if "significantly lower in" in line
                    and "P99 TTFT" in line)  # fmt: skip
    sig = p99["significant"].astype(bool)
    lower, higher = (
        int((sig & (p99["rel_diff"] < 0)).sum()),
        int((sig & (p99["rel_diff"] > 0)).sum()),
    )
    assert (f"significantly lower in {lower}, higher in {higher}, no significant difference in "
            f"{len(p99) - lower - higher} of {len(ids)} scenarios") in p99_line  # fmt: skip
    assert sum(1 for line in text.splitlines() if line.startswith("  ") and ": " in line) <= 30
    assert files_before == len(list(tmp_path.iterdir()))


def test_forest_verdict_classes_by_hand():
    """A bar clear of 0 (own p < alpha) that is not significant after adjustment has its own
    class; untested rows are never called significant or not."""
    from distsim.report.markdown import verdict_kind

    assert verdict_kind(True, True, 0.001, 0.05) == "significant"
    assert verdict_kind(False, True, 0.043, 0.05) == "alone"
    assert verdict_kind(False, True, 0.20, 0.05) == "not significant"
    assert verdict_kind(False, False, 0.001, 0.05) == "not tested"
