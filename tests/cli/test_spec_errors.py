"""Bad specs: one line naming the field and the problem, exit code 2, no traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from distsim_testkit import one_line_error, study_dict
from typer.testing import CliRunner

from distsim.cli import app

runner = CliRunner()


def run_simulate(path: Path, *extra: str):
    return runner.invoke(app, ["simulate", str(path), "--arch", "monolithic", *extra])


def write(tmp_path: Path, data: Any) -> Path:
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return p


def with_change(path: str, value: Any, delete: bool = False) -> dict[str, Any]:
    data = study_dict()
    node = data
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]
    if delete:
        del node[last]
    else:
        node[last] = value
    return data


def assert_one_line_error(result, *needles: str) -> None:
    one_line_error(result, *needles)


BAD = [
    ("unknown field", with_change("workload.colour", "blue"), ["workload.colour", "unknown field"]),
    ("misspelt field", with_change("duration", 300), ["duration", "unknown field"]),
    ("negative rate", with_change("workload.arrival.rate_rps", -2.0), ["workload.arrival.rate_rps", "greater than 0"]),
    ("zero gpus", with_change("architectures.monolithic.gpus", 0), ["architectures.monolithic.gpus", "greater than 0"]),
    ("zero decode gpus", with_change("architectures.disaggregated.decode_gpus", 0), ["architectures.disaggregated.decode_gpus"]),
    ("warmup after end", with_change("warmup_s", 100.0), ["warmup_s", "less than duration_s"]),
    ("min over max", with_change("workload.prompt_tokens.max", 4), ["workload.prompt_tokens", "min (8) is greater than max (4)"]),
    ("unknown dist", with_change("workload.prompt_tokens.dist", "zipf"), ["workload.prompt_tokens", "zipf"]),
    ("unknown kind", with_change("architectures.monolithic.kind", "hybrid"), ["architectures.monolithic", "hybrid"]),
    ("baseline unknown", with_change("baseline", "nope"), ["baseline", "'nope' is not among"]),
    ("no architectures", with_change("architectures", {}), ["architectures"]),
    ("missing workload", with_change("workload", None, delete=True), ["workload", "required"]),
    ("bad name", with_change("name", "my study!"), ["name"]),
    ("nan rate", with_change("workload.arrival.rate_rps", float("nan")), ["workload.arrival.rate_rps"]),
    ("string gpus", with_change("architectures.monolithic.gpus", "four"), ["architectures.monolithic.gpus"]),
    ("bad first_token", with_change("architectures.disaggregated.first_token", "never"), ["architectures.disaggregated.first_token"]),
]  # fmt: skip


@pytest.mark.parametrize(("case", "data", "needles"), BAD, ids=[b[0] for b in BAD])
def test_bad_spec_is_one_line_with_exit_code_2(tmp_path, case, data, needles) -> None:
    assert_one_line_error(run_simulate(write(tmp_path, data)), *needles)


def test_missing_file(tmp_path) -> None:
    assert_one_line_error(run_simulate(tmp_path / "nope.yaml"), "nope.yaml", "no such spec file")


def test_invalid_yaml(tmp_path) -> None:
    result = run_simulate(write(tmp_path, "name: [unclosed\nseed: 1\n"))
    assert_one_line_error(result, "invalid YAML", "line")


def test_yaml_that_is_not_a_mapping(tmp_path) -> None:
    assert_one_line_error(run_simulate(write(tmp_path, "- a\n- b\n")), "mapping")


def test_unsafe_yaml_tags_are_rejected(tmp_path) -> None:
    result = run_simulate(write(tmp_path, "name: !!python/object/apply:os.system ['true']\n"))
    assert_one_line_error(result, "invalid YAML")


def test_unknown_architecture_name(tmp_path) -> None:
    result = runner.invoke(app, ["simulate", str(write(tmp_path, study_dict())), "--arch", "nope"])
    assert_one_line_error(result, "--arch", "'nope'")


def test_bad_override_path(tmp_path) -> None:
    result = run_simulate(write(tmp_path, study_dict()), "--set", "workload.arrival.rat_rps=3")
    assert_one_line_error(result, "workload.arrival.rat_rps", "no such field")


def test_good_spec_prints_json(tmp_path) -> None:
    import json

    result = run_simulate(write(tmp_path, study_dict()), "--json", "--replication", "1")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    for key in (
        "architecture",
        "replication",
        "seed",
        "n_requests",
        "ttft_mean_s",
        "ttft_p50_s",
        "ttft_p90_s",
        "ttft_p99_s",
        "ttft_max_s",
        "e2e_mean_s",
        "e2e_p99_s",
        "utilization",
    ):
        assert key in record  # fmt: skip
    assert record["replication"] == 1 and record["seed"] == 7
    assert (
        record["ttft_p50_s"] <= record["ttft_p90_s"] <= record["ttft_p99_s"] <= record["ttft_max_s"]
    )
    assert set(record["utilization"]) == {"gpu"}
