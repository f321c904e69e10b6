"""The sequential loop of `distsim select` (runner.selection.drive): decisions depend only on the
stored rows, so an interrupted selection resumes to the same answer and a finished one reruns
nothing. In-process simulation, no Ray."""

from __future__ import annotations

import pytest
from distsim_testkit import study_dict

from distsim.runner.plan import plan_study
from distsim.runner.selection import Rows, drive, local_simulator
from distsim.spec.study import Study


def close_study() -> Study:
    data = study_dict(
        replications=4,
        duration_s=40.0,
        architectures=None,
        baseline=None,
        candidates={"disaggregated_splits": {"gpus": 4}},
        select={"objective": "e2e_mean_s", "indifference": 0.01, "stage_replications": 2},
    )
    data["workload"]["arrival"]["rate_rps"] = 5.0
    return Study.model_validate({k: v for k, v in data.items() if v is not None})


def summary(sel) -> list[tuple]:
    return [(r.architecture, r.status, r.replications, r.estimate) for r in sel.ranking]


def test_interrupted_selection_resumes_to_the_same_answer_and_then_reruns_nothing():
    plan = plan_study(close_study())
    whole = Rows()
    [expected] = drive(plan, whole, local_simulator(plan, whole))
    assert expected.replications_used > 4 * len(plan.architectures)  # waves after the first

    kept = Rows()
    inner = local_simulator(plan, kept)
    calls = []

    def interrupted(units):
        calls.append(len(units))
        if len(calls) == 2:
            inner(units[: len(units) // 2])  # half a wave is stored, then Ctrl-C
            raise KeyboardInterrupt
        inner(units)

    with pytest.raises(KeyboardInterrupt):
        drive(plan, kept, interrupted)
    [resumed] = drive(plan, kept, local_simulator(plan, kept))
    assert summary(resumed) == summary(expected)

    def nothing(units):
        raise AssertionError(f"simulated {len(units)} units again")

    [again] = drive(plan, kept, nothing)
    assert summary(again) == summary(expected)


def test_spec_errors_are_one_line():
    from distsim.errors import SpecError
    from distsim.runner.selection import select_study

    with pytest.raises(SpecError, match="^select: the spec has no select block"):
        select_study(study_dict())
    bad = study_dict(select={"objective": "nope"})
    with pytest.raises(SpecError, match="^select.objective"):
        select_study(bad)
    bad = study_dict(
        select={
            "objective": "e2e_mean_s",
            "subject_to": [{"metric": "slo_attainment", "at_least": 0.9}],
        }
    )
    with pytest.raises(SpecError, match="needs slo"):
        select_study(bad)


def test_report_rederives_a_stored_selection_without_simulating(tmp_path):
    from typer.testing import CliRunner

    from distsim.cli import app
    from distsim.runner.selection import load_selection
    from distsim.runner.store import ResultStore

    study = close_study()
    plan = plan_study(study)
    rows = Rows()
    [expected] = drive(plan, rows, local_simulator(plan, rows))
    with ResultStore.open(tmp_path) as store:
        store.write_spec(study.model_dump(mode="json"))
        store.append([row for cell in rows.cells.values() for row in cell.values()])
        store.consolidate(plan)
    (tmp_path / "selection.json").write_text("{}")
    [again] = load_selection(tmp_path).scenarios
    assert summary(again) == summary(expected)
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"best: {expected.best} — ")
    assert "## Selection" in (tmp_path / "report.md").read_text()


def test_a_sweep_gets_one_answer_per_scenario():
    study = close_study().model_copy(update={"sweep": {"workload.arrival.rate_rps": [3.0, 5.0]}})
    plan = plan_study(Study.model_validate(study.model_dump()))
    rows = Rows()
    sels = drive(plan, rows, local_simulator(plan, rows))
    assert [s.scenario.params["workload.arrival.rate_rps"] for s in sels] == [3.0, 5.0]
    assert all(s.best is not None for s in sels)
    assert {r.architecture for s in sels for r in s.ranking} == set(plan.architectures)
