"""The command line behaves as command lines do: --version, -h, flags without a value
placeholder, help that wraps at word boundaries, a suggestion for a misspelt field, and one plain
line (exit code 2) for an empty, binary or missing spec, or a folder given as one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from distsim_testkit import study_dict
from typer.testing import CliRunner

import distsim
from distsim.cli import app

runner = CliRunner()


def one_error_line(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_version_prints_the_version_and_exits_0() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"distsim {distsim.__version__}\n"


@pytest.mark.parametrize(
    "command",
    [[], ["run"], ["validate"], ["simulate"], ["workload"], ["report"], ["schema"], ["select"]],
)
def test_dash_h_is_help_everywhere(command: list[str]) -> None:
    short = runner.invoke(app, [*command, "-h"], env={"COLUMNS": "100"})
    long = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "100"})
    assert short.exit_code == 0 and long.exit_code == 0, short.output
    assert short.stdout == long.stdout
    assert "Usage: " in short.stdout and "Show this message and exit" in short.stdout


def test_flags_show_no_value_placeholder() -> None:
    result = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0
    assert "<bool>" not in result.stdout
    fresh = next(line for line in result.stdout.splitlines() if "--fresh" in line)
    assert re.search(r"--fresh\s+Delete earlier results", fresh), fresh


def test_help_wraps_at_word_boundaries_not_at_the_docstring_line_breaks() -> None:
    result = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "120"})
    text = " ".join(line.strip(" │") for line in result.stdout.splitlines())
    # The docstring breaks this sentence after "saved and"; wide help keeps it on one line.
    assert any(
        "1 when some failed (the rest is saved and reported), 2 on bad input" in line
        for line in result.stdout.splitlines()
    ), result.stdout
    assert "saved and  reported" not in text


def _spec(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study_dict(**changes)), encoding="utf-8")
    return path


def test_a_misspelt_field_gets_a_suggestion(tmp_path: Path) -> None:
    data = study_dict()
    data["workload"]["prompt_tokns"] = data["workload"].pop("prompt_tokens")
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    line = one_error_line(runner.invoke(app, ["validate", str(path)]))
    assert line.startswith(
        "error: workload.prompt_tokns: unknown field; did you mean `prompt_tokens`?"
    )


def test_a_misspelt_top_level_field_is_named_before_the_missing_one(tmp_path: Path) -> None:
    data = study_dict()
    data["duration"] = data.pop("duration_s")
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    line = one_error_line(runner.invoke(app, ["validate", str(path)]))
    assert line == (
        "error: duration: unknown field; did you mean `duration_s`? (and 1 more problem(s))"
    )


def test_an_unknown_field_with_no_close_match_lists_the_fields(tmp_path: Path) -> None:
    data = study_dict()
    data["gpu"]["colour"] = "blue"
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    line = one_error_line(runner.invoke(app, ["validate", str(path)]))
    assert line.startswith("error: gpu.colour: unknown field (expected one of: preset, ")
    assert "memory_fraction, prefill_tokens_per_s, decode_tokens_per_s" in line


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "the spec file is empty; see studies/default.yaml for an example"),
        (b"# only a comment\n", "the spec file is empty; see studies/default.yaml for an example"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a text file (a spec is YAML text in UTF-8)"),
        (b"name: caf\xe9\n", "not a text file (a spec is YAML text in UTF-8)"),
        (b"name: a\x00b\n", "not a text file (a spec is YAML text in UTF-8)"),
    ],
    ids=["empty", "comment-only", "png", "latin-1", "nul"],
)
def test_an_empty_or_binary_spec_is_one_plain_line(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "study.yaml"
    path.write_bytes(content)
    for command in (["validate", str(path)], ["run", str(path)], ["workload", str(path)]):
        assert one_error_line(runner.invoke(app, command)) == f"error: {path}: {message}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]  # nothing written


def test_a_folder_or_a_missing_file_is_one_plain_line(tmp_path: Path) -> None:
    line = one_error_line(runner.invoke(app, ["validate", str(tmp_path)]))
    assert (
        line
        == f"error: {tmp_path}: is a folder; give a spec file (YAML), e.g. studies/default.yaml"
    )
    missing = tmp_path / "nope.yaml"
    line = one_error_line(runner.invoke(app, ["run", str(missing)]))
    assert line == f"error: {missing}: no such spec file"
