"""The CLI around studies: `run`, `validate`, `report`, `schema`, `simulate --scenario`, with
Typer's CliRunner and exit codes. One local Ray session (2 CPUs, loopback) for the module; `run`
uses it as an already-initialised session."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from distsim_testkit import study_dict
from typer.testing import CliRunner

from distsim.cli import app
from distsim.runner.plan import plan_study
from distsim.runner.store import ResultStore, read_rows
from distsim.spec.study import validate_study
from distsim.workload.generate import generate

RATE = "workload.arrival.rate_rps"
SUMMARY = ["scenario_id", RATE, "architecture", "metric", "estimate", "ci_low", "ci_high", "n"]
COMPARISONS = [
    "scenario_id", RATE, "architecture", "baseline", "metric", "baseline_estimate", "estimate",
    "diff", "diff_ci_low", "diff_ci_high", "rel_diff", "p_value", "significant",
]  # fmt: skip
# Columns the statistics issues add to the same files (flags and the duration that would clear
# run_too_short; the relative interval, multiple-comparison adjustment, whether tested and why).
LATER = {"flags", "duration_s_needed", "rel_ci_low", "rel_ci_high", "p_adjusted", "tested",
         "not_tested"}  # fmt: skip

runner = CliRunner()


def spec_dict(**changes) -> dict:
    base = {"name": "cli", "duration_s": 20.0, "warmup_s": 2.0, "replications": 5,
            "sweep": {RATE: [3.0, 5.0]}}  # fmt: skip
    return study_dict(**(base | changes))


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_layout(columns: list[str], issue_layout: list[str]) -> None:
    """The issue's columns, in order; only the statistics issue's additions in between."""
    assert [c for c in columns if c not in LATER] == issue_layout
    assert set(columns) - set(issue_layout) <= LATER


@pytest.fixture
def spec(tmp_path) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec_dict(), sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def finished(ray_session, tmp_path_factory):
    """One finished run of the tiny study: (spec path, out dir, CliRunner result)."""
    root = tmp_path_factory.mktemp("cli")
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(spec_dict(), sort_keys=False), encoding="utf-8")
    out = root / "out"
    result = invoke("run", path, "--out", out, "--quiet", "--workers", "3")
    return path, out, result


# ---------------------------------------------------------------- run


def test_run_writes_every_file_and_prints_the_report(finished):
    path, out, result = finished
    assert result.exit_code == 0, result.output
    for name in ("spec.yaml", "manifest.json", "replications.parquet", "summary.csv",
                 "comparisons.csv"):  # fmt: skip
        assert (out / name).is_file(), name
    plan = plan_study(validate_study(spec_dict()))
    for ps in plan.scenarios:
        assert f"scenario {ps.id} ({RATE}={ps.params[RATE]})" in result.output
    # the headline: one sentence per primary metric, P99 TTFT among them, Holm-adjusted
    headline = [ln for ln in result.output.splitlines() if ln.startswith("  ▶ ")]
    assert any("P99 TTFT" in ln and "Holm" in ln for ln in headline)
    assert "read next: " in result.output.splitlines()[-1]  # report.md and the plots
    assert "±" in result.output
    assert "--workers does not apply" in result.output  # the session was already running


def test_run_outputs_have_the_documented_layout(finished):
    _, out, _ = finished
    plan = plan_study(validate_study(spec_dict()))
    rows = pd.read_parquet(out / "replications.parquet")
    assert len(rows) == plan.rows == 2 * 2 * 5
    summary = pd.read_csv(out / "summary.csv")
    comparisons = pd.read_csv(out / "comparisons.csv")
    assert_layout(list(summary.columns), SUMMARY)
    assert_layout(list(comparisons.columns), COMPARISONS)
    assert set(summary["architecture"]) == {"monolithic", "disaggregated"}
    assert {"ttft_mean_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s"} <= set(summary["metric"])
    assert (summary["ci_low"] <= summary["estimate"]).all()
    assert (summary["estimate"] <= summary["ci_high"]).all()
    assert (comparisons["baseline"] == "monolithic").all()
    assert set(comparisons["architecture"]) == {"disaggregated"}
    assert not comparisons["p_value"].isna().any()

    manifest = json.loads((out / "manifest.json").read_text())
    for key in ("distsim", "python", "ray", "simpy", "numpy", "git_commit", "seed",
                "started_at", "finished_at"):  # fmt: skip
        assert key in manifest
    assert isinstance(manifest["nodes"], int) and isinstance(manifest["cpus"], int)
    assert (manifest["nodes"], manifest["cpus"]) == (1, 2)
    assert manifest["seed"] == 7 and manifest["status"] == "complete"
    stored_spec = yaml.safe_load((out / "spec.yaml").read_text())
    assert stored_spec["replications"] == 5 and stored_spec["confidence"] == 0.95
    assert stored_spec["sweep"] == {RATE: [3.0, 5.0]}


def test_run_again_resumes_with_nothing_to_do(finished):
    path, out, _ = finished
    again = invoke("run", path, "--out", out, "--quiet")
    assert again.exit_code == 0, again.output
    assert "0 rows simulated, 20 reused" in again.output


def test_run_more_replications_simulates_only_the_new_ones(ray_session, spec, tmp_path):
    out = tmp_path / "out"
    assert invoke("run", spec, "--out", out, "--quiet", "--replications", "3").exit_code == 0
    more = invoke("run", spec, "--out", out, "--quiet", "--replications", "5")
    assert more.exit_code == 0, more.output
    assert "8 rows simulated, 12 reused" in more.output
    fresh = invoke("run", spec, "--out", out, "--quiet", "--replications", "5", "--fresh")
    assert "20 rows simulated, 0 reused" in fresh.output


def test_run_with_set_override_changes_the_scenarios(ray_session, spec, tmp_path):
    result = invoke("run", spec, "--out", tmp_path / "o", "--quiet", "--replications", "2",
                    "--set", "duration_s=10")  # fmt: skip
    assert result.exit_code == 0, result.output
    stored_spec = yaml.safe_load((tmp_path / "o" / "spec.yaml").read_text())
    assert stored_spec["duration_s"] == 10.0 and stored_spec["replications"] == 2
    # The stored rows are those of 10 s runs: the scenario ids of the overridden spec, and each
    # row measured exactly the requests generated in [warmup_s, 10 s) of its replication.
    plan = plan_study(validate_study(spec_dict(duration_s=10.0, replications=2)))
    rows = pd.read_parquet(tmp_path / "o" / "replications.parquet")
    assert len(rows) == plan.rows == 2 * 2 * 2
    by_id = {ps.id: ps.scenario for ps in plan.scenarios}
    assert set(rows["scenario_id"]) == set(by_id)
    for row in rows.itertuples(index=False):
        sc = by_id[row.scenario_id]
        arrivals = generate(sc.workload, 10.0, sc.seed, row.replication).arrival_s
        assert row.n_requests == int((arrivals >= sc.warmup_s).sum()) > 0
        assert (arrivals < 10.0).all()


@pytest.mark.parametrize(
    "args,start",
    [
        (["--set", f"sweep.{RATE}=[1, -1]"], f"error: sweep.{RATE}: "),
        (["--replications", "1"], "error: replications: "),
        (["--set", "workload.arival.rate_rps=2"], "error: workload.arival.rate_rps: "),
        (["--workers", "0"], None),
    ],
)
def test_run_bad_input_is_one_line_exit_2_and_writes_nothing(spec, tmp_path, args, start):
    out = tmp_path / "never"
    result = invoke("run", spec, "--out", out, "--quiet", *args)
    assert result.exit_code == 2
    if start is not None:
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(start), result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_run_missing_spec_is_exit_2(tmp_path):
    result = invoke("run", tmp_path / "nope.yaml", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "no such spec file" in result.output


# ---------------------------------------------------------------- validate


def test_validate_prints_the_plan_without_running(spec, tmp_path):
    result = invoke("validate", spec)
    assert result.exit_code == 0, result.output
    plan = plan_study(validate_study(spec_dict()))
    out = result.output
    assert "scenarios      2" in out
    for ps in plan.scenarios:
        assert ps.id in out
    assert "monolithic [baseline], disaggregated" in out
    assert "replications   5" in out and "rows           20" in out
    assert "tasks" in out
    expected = sum(rate * 20.0 * 2 * 5 for rate in (3.0, 5.0))  # rate x duration x archs x reps
    assert f"{expected:,.0f} simulated" in out
    assert not (tmp_path / "results").exists()


def test_validate_bad_sweep_is_one_line_exit_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec_dict(sweep={"workload.arrival.rate": [1.0]})))
    result = invoke("validate", path)
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: sweep.workload.arrival.rate: no such field in the spec "
        "('workload.arrival.rate' does not exist)"
    )


def test_validate_bad_value_names_the_path(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec_dict(sweep={RATE: [2.0, 0.0]})))
    result = invoke("validate", path)
    assert result.exit_code == 2
    assert result.output.startswith(f"error: sweep.{RATE}: value 0.0: ")


# ---------------------------------------------------------------- report


def test_report_reprints_the_tables_from_disk(finished):
    _, out, run_result = finished
    result = invoke("report", out)
    assert result.exit_code == 0, result.output
    report_lines = [ln for ln in result.output.splitlines() if ln.startswith("  ▶ ")]
    run_lines = [ln for ln in run_result.output.splitlines() if ln.startswith("  ▶ ")]
    assert report_lines and report_lines == run_lines


def test_report_of_a_partial_run_says_so(finished, tmp_path):
    _, out, _ = finished
    import shutil

    copy = tmp_path / "partial"
    shutil.copytree(out, copy)
    rows, _, _ = read_rows(copy)  # the stored rows, kept only for replications 0-2
    shutil.rmtree(copy / "rows")
    with ResultStore.open(copy) as store:
        store.append(rows[rows["replication"] < 3].to_dict("records"))
    result = invoke("report", copy)
    assert result.exit_code == 0, result.output
    assert "3 replications of 5 planned" in result.output
    assert "12 of 20 rows stored" in result.output


@pytest.mark.parametrize("make", ["missing", "no_spec"])
def test_report_of_a_non_results_folder_is_exit_2(tmp_path, make):
    target = tmp_path / "x"
    if make == "no_spec":
        target.mkdir()
    result = invoke("report", target)
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1


# ---------------------------------------------------------------- schema and simulate


def test_schema_is_the_study_json_schema():
    result = invoke("schema")
    assert result.exit_code == 0
    schema = json.loads(result.output)
    for field in ("replications", "confidence", "sweep", "scenarios", "architectures"):
        assert field in schema["properties"]
    assert schema["additionalProperties"] is False


def test_simulate_runs_the_first_scenario_or_the_one_asked(spec):
    plan = plan_study(validate_study(spec_dict()))
    first = json.loads(invoke("simulate", spec, "--arch", "monolithic", "--json").output)
    assert first["scenario_id"] == plan.scenarios[0].id and first[RATE] == 3.0
    second_id = plan.scenarios[1].id
    result = invoke("simulate", spec, "--arch", "monolithic", "--json", "--scenario", second_id)
    second = json.loads(result.output)
    assert second["scenario_id"] == second_id and second[RATE] == 5.0
    assert second["n_requests"] > first["n_requests"]
    bad = invoke("simulate", spec, "--arch", "monolithic", "--scenario", "nope")
    assert bad.exit_code == 2 and "error: --scenario: 'nope' is not a scenario" in bad.output
