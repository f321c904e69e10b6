"""`distsim select`: the answer on the first line, selection.json, report.md and its plot, a rerun
that simulates nothing; bad input is one line and exit 2. One local Ray session (loopback)."""

from __future__ import annotations

import json

import pytest
import yaml
from distsim_testkit import study_dict
from typer.testing import CliRunner

from distsim.cli import app

runner = CliRunner()


def spec_file(tmp_path, **changes):
    data = study_dict(duration_s=40.0, replications=4, **changes)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_spec_without_select_is_one_line_and_exit_2(tmp_path):
    result = runner.invoke(app, ["select", str(spec_file(tmp_path)), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: select: the spec has no select block (objective, indifference, ...)"
    ]
    assert not (tmp_path / "o").exists()


def test_a_per_dollar_objective_without_prices_is_one_line_and_writes_nothing(tmp_path):
    """The study's GPU gives token rates and no price: goodput per dollar cannot be computed."""
    select = {"objective": "goodput_requests_per_usd", "indifference": 0.05,
              "goodput": {"low_rps_per_gpu": 0.2, "high_rps_per_gpu": 2.0}}  # fmt: skip
    path = spec_file(tmp_path, select=select, slo={"ttft_s": 3.0})
    result = runner.invoke(app, ["select", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        "error: select.objective: goodput_requests_per_usd needs a price: set gpu.usd_per_hour "
        "(or use a GPU preset that has one) for every pool"
    ]
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_select_prints_the_answer_first_and_writes_its_files(tmp_path, ray_session):
    spec = spec_file(
        tmp_path,
        architectures=None,
        baseline=None,
        candidates={"disaggregated_splits": {"gpus": 4}},
        select={"objective": "e2e_mean_s", "indifference": 0.02},
    )
    data = yaml.safe_load(spec.read_text())
    data = {k: v for k, v in data.items() if v is not None}
    spec.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    result = runner.invoke(app, ["select", str(spec), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first.startswith("best: ") and "P(correct selection) >= 0.95 within 2%" in first
    doc = json.loads((out / "selection.json").read_text())
    [sc] = doc["scenarios"]
    assert set(sc) >= {"scenario_id", "objective", "goal", "confidence", "indifference", "best",
                       "tied", "ranking"}  # fmt: skip
    assert {r["status"] for r in sc["ranking"]} <= {"best", "tied", "eliminated", "unstable",
                                                    "infeasible"}  # fmt: skip
    assert set(sc["ranking"][0]) >= {"architecture", "estimate", "ci_low", "ci_high",
                                     "replications", "status"}  # fmt: skip
    report = (out / "report.md").read_text()
    assert "## Selection" in report and (out / "selection_0.png").is_file()
    again = runner.invoke(app, ["select", str(spec), "--out", str(out), "--quiet"])
    assert again.exit_code == 0
    assert again.output.splitlines()[0] == first
    assert "0 rows simulated" in again.output


@pytest.mark.slow
def test_select_on_a_searched_goodput_through_ray(tmp_path, ray_session):
    spec = spec_file(
        tmp_path,
        architectures=None,
        baseline=None,
        slo={"ttft_s": 0.5},
        candidates={"disaggregated_splits": {"gpus": 4}},
        select={"objective": "goodput_rps_per_gpu", "indifference": 0.1,
                "goodput": {"low_rps_per_gpu": 0.5, "high_rps_per_gpu": 8.0,
                            "rel_precision": 0.05}},
    )  # fmt: skip
    data = {k: v for k, v in yaml.safe_load(spec.read_text()).items() if v is not None}
    spec.write_text(yaml.safe_dump(data))
    out = tmp_path / "gp"
    result = runner.invoke(app, ["select", str(spec), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("best: ") and "req/s/GPU" in result.output.splitlines()[0]
    report = runner.invoke(app, ["report", str(out)])
    assert report.exit_code == 0 and report.output.splitlines()[0] == result.output.splitlines()[0]
