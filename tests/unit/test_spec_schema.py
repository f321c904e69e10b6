"""`distsim schema` serves editors: every field of every spec model carries a description.

The docs' spec reference is rendered from the same schema, so a field added without a description
would show up there as a blank cell; this test names it instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from distsim.cli import app
from distsim.spec.study import Study


def _undescribed(schema: dict) -> list[str]:
    models = {"Study": schema, **schema.get("$defs", {})}
    missing = []
    for name, model in models.items():
        if not model.get("description"):
            missing.append(f"{name} (the model)")
        for field, prop in model.get("properties", {}).items():
            if not str(prop.get("description", "")).strip():
                missing.append(f"{name}.{field}")
    return missing


def test_every_spec_field_has_a_description():
    assert _undescribed(Study.model_json_schema()) == []


def test_distsim_schema_prints_the_described_schema():
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema == json.loads(json.dumps(Study.model_json_schema()))
    assert _undescribed(schema) == []
    assert "description" in schema["properties"]["replications"]


def test_the_walk_catches_a_field_without_a_description():
    schema = {"description": "d", "properties": {"a": {"description": "x"}, "b": {}}}
    assert _undescribed(schema) == ["Study.b"]


def test_an_editor_accepts_every_shipped_study_and_flags_an_incomplete_lognormal():
    """What the YAML language server does with `distsim schema`, done with jsonschema."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = Study.model_json_schema()
    studies = sorted((Path(__file__).resolve().parents[2] / "studies").glob("*.yaml"))
    assert studies
    for path in studies:
        jsonschema.validate(yaml.safe_load(path.read_text(encoding="utf-8")), schema)
    data = yaml.safe_load(studies[0].read_text(encoding="utf-8"))
    data["workload"] = {
        "arrival": {"process": "poisson", "rate_rps": 1.0},
        "prompt_tokens": {"dist": "lognormal", "mean": 500, "cv": 1.0},
        "output_tokens": {"dist": "lognormal", "median": 64, "p90": 256},
    }
    jsonschema.validate(data, schema)
    data["workload"]["prompt_tokens"] = {"dist": "lognormal", "mean": 500}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)
