"""Bad traces and bad workload specs: one-line errors naming the field, exit code 2, no traceback;
rows with missing or non-positive sizes are skipped and counted, never silently."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from distsim_testkit import one_line_error, study_dict
from typer.testing import CliRunner

from distsim.cli import app
from distsim.workload.trace_files import read_trace

runner = CliRunner()

GOOD_ROWS = ["0.0,100,10", "0.5,200,20", "1.5,300,30", "4.0,50,5"]


def write_spec(folder: Path, workload: dict, **changes) -> Path:
    data = study_dict(workload=workload, **changes)
    spec = folder / "study.yaml"
    spec.write_text(yaml.safe_dump(data))
    return spec


def write_trace(folder: Path, text: str, name: str = "trace.csv") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def run_error(args: list[str]) -> str:
    return one_line_error(runner.invoke(app, args))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        ("", "empty file"),
        ("arrival_s,prompt_tokens,output_tokens\n", "no data rows"),
        ("time,prompt,output\n0,1,2\n", "expected columns TIMESTAMP, ContextTokens"),
        ("TIMESTAMP,ContextTokens\n2023-11-16 18:17:03.9,5\n", "missing column(s) GeneratedTokens"),
        ("arrival_s,prompt_tokens,output_tokens\n0,100,10\n1,abc,10\n", "line 3: prompt_tokens"),
        ("arrival_s,prompt_tokens,output_tokens\n0,100,10\n1,12.5,10\n", "not a whole number"),
        ("arrival_s,prompt_tokens,output_tokens\n0,100,10\n2,100,10\n1,100,10\n", "back in time"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,2\n", "not a valid time"),
        ("arrival_s,prompt_tokens,output_tokens\n0,,10\n1,0,10\n2,5,10\n", "fewer than two usable"),
    ],
)
@pytest.mark.parametrize("command", ["workload", "simulate"])
def test_bad_trace_is_a_one_line_error(
    tmp_path: Path, content: str | None, expected: str, command: str
) -> None:
    if content is not None:
        write_trace(tmp_path, content)
    spec = write_spec(tmp_path, {"trace": {"path": "trace.csv", "mode": "replay"}})
    args = [command, str(spec)] + (["--arch", "monolithic"] if command == "simulate" else [])
    err = run_error(args)
    assert err.startswith("error: workload.trace.path: "), err
    assert expected in err, err
    assert "trace.csv" in err


def test_skipped_rows_are_counted_and_shown(tmp_path: Path) -> None:
    rows = ["arrival_s,prompt_tokens,output_tokens", *GOOD_ROWS[:2], "1.0,,10", "1.2,5,0"]
    rows += ["1.3,-4,7", *GOOD_ROWS[2:]]
    path = write_trace(tmp_path, "\n".join(rows) + "\n")
    table = read_trace(str(path))
    assert (table.n_rows, table.n_skipped, len(table)) == (7, 3, 4)
    assert table.arrival_s.tolist() == [0.0, 0.5, 1.5, 4.0]
    assert table.prompt_tokens.tolist() == [100, 200, 300, 50]
    spec = write_spec(
        tmp_path, {"trace": {"path": "trace.csv", "mode": "replay"}}, duration_s=10.0, warmup_s=0
    )
    result = runner.invoke(app, ["workload", str(spec), "-n", "1"])
    assert result.exit_code == 0, result.output
    assert "7 rows, 3 skipped (missing or non-positive size)" in result.output
    assert "intervals across replications are not meaningful" in result.output


def test_generic_schema_with_offset_times_and_extra_columns(tmp_path: Path) -> None:
    text = "note,output_tokens,arrival_s,prompt_tokens\na,10,100.0,7\nb,20,100.25,8\nc,5,101,9\n"
    table = read_trace(str(write_trace(tmp_path, text)))
    assert table.schema == "generic"
    assert table.arrival_s.tolist() == [0.0, 0.25, 1.0]
    assert table.output_tokens.tolist() == [10, 20, 5]
    assert table.mean_rate_rps == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("workload", "expected"),
    [
        (
            {"trace": {"path": "t.csv"}, "prompt_tokens": {"dist": "constant", "value": 5}},
            "workload: prompt_tokens/output_tokens cannot be combined with trace",
        ),
        (
            {"trace": {"path": "t.csv"}, "arrival": {"process": "poisson", "rate_rps": 1}},
            "workload: arrival cannot be combined with trace mode 'window'",
        ),
        ({"trace": {"path": "t.csv", "mode": "loop"}}, "workload.trace.mode: "),
        ({"trace": {"path": "t.csv", "rate_scale": 0}}, "workload.trace.rate_scale: "),
        ({"trace": {"path": "t.csv", "speed": 2}}, "workload.trace.speed: unknown field"),
        (
            {
                "arrival": {"process": "poisson"},
                "prompt_tokens": {"dist": "constant", "value": 5},
                "output_tokens": {"dist": "constant", "value": 5},
            },
            "workload: arrival.rate_rps is missing",
        ),
        (
            {
                "arrival": {"process": "poisson", "rate_rps": 1},
                "mix": [
                    {
                        "name": "a",
                        "weight": 1,
                        "prompt_tokens": {"dist": "constant", "value": 5},
                        "output_tokens": {"dist": "constant", "value": 5},
                    }
                ]
                * 2,
            },
            "workload: mix: class name(s) a used more than once",
        ),
        (
            {
                "arrival": {"process": "poisson", "rate_rps": 1},
                "prompt_tokens": {"dist": "empirical", "path": "t.csv", "column": "nope"},
                "output_tokens": {"dist": "constant", "value": 5},
            },
            "workload.prompt_tokens: ",
        ),
    ],
)
def test_bad_workload_fields_are_one_line_errors(
    tmp_path: Path, workload: dict, expected: str
) -> None:
    write_trace(tmp_path, "arrival_s,prompt_tokens,output_tokens\n" + "\n".join(GOOD_ROWS), "t.csv")
    err = run_error(["workload", str(write_spec(tmp_path, workload))])
    assert expected in err, err
