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
    assert "unstable" in text and "excluded from significance testing" in text
