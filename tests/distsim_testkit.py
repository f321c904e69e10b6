"""Helpers shared by the test modules: small studies built from plain dicts, as a user writes them.

Imported by name (`from distsim_testkit import study_dict`): `tests/` is on pytest's path, and the
name is one no installed package uses.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from typer.testing import CliRunner

from distsim.cli import app
from distsim.runner.store import KEY
from distsim.sim.replication import simulate_requests
from distsim.spec.study import Scenario, Study
from distsim.stats.sketch import LogHistogram
from distsim.workload.generate import generate

BASE_STUDY: dict[str, Any] = {
    "name": "test",
    "seed": 7,
    "duration_s": 60.0,
    "warmup_s": 5.0,
    "workload": {
        "arrival": {"process": "poisson", "rate_rps": 2.0},
        "prompt_tokens": {"dist": "lognormal", "mu": 6.0, "sigma": 0.9, "min": 8},
        "output_tokens": {"dist": "lognormal", "mu": 6.0, "sigma": 1.1, "min": 16},
    },
    "gpu": {"prefill_tokens_per_s": 8000, "decode_tokens_per_s": 2000},
    "architectures": {
        "monolithic": {"kind": "monolithic", "gpus": 4},
        "disaggregated": {"kind": "disaggregated", "prefill_gpus": 2, "decode_gpus": 2},
    },
    "baseline": "monolithic",
    "replications": 3,
}


def study_dict(**changes: Any) -> dict[str, Any]:
    """A copy of the base study with top-level keys replaced."""
    data = copy.deepcopy(BASE_STUDY)
    data.update(copy.deepcopy(changes))
    return data


RATE = "workload.arrival.rate_rps"


def tiny_study(
    name: str = "tiny",
    replications: int = 6,
    rates: tuple[float, ...] = (4.0, 6.0),
    **changes: Any,
) -> dict[str, Any]:
    """Two scenarios (a rate sweep) x two architectures, 20 s runs: ~80-120 requests each."""
    base = {"name": name, "duration_s": 20.0, "warmup_s": 2.0, "replications": replications,
            "sweep": {RATE: list(rates)}}  # fmt: skip
    return study_dict(**(base | changes))


def scenario(**changes: Any) -> Scenario:
    """The base study's scenario validated on its own (no name, baseline or replications), so an
    engine test may use any set of architectures."""
    data = study_dict(**changes)
    for key in ("name", "baseline", "replications"):
        data.pop(key, None)
    return Scenario.model_validate(data)


def make_study(**changes: Any) -> Study:
    return Study.model_validate(study_dict(**changes))


def make_scenario(**changes: Any) -> Scenario:
    return make_study(**changes).scenario()


AZURE_DATA = Path(__file__).resolve().parents[1] / "studies" / "data" / "azure-llm-2023"
AZURE_CODE = AZURE_DATA / "AzureLLMInferenceTrace_code.csv"


def mix_workload(weights: tuple[float, float] = (3.0, 1.0)) -> dict:
    return {
        "arrival": {"process": "poisson", "rate_rps": 20.0},
        "mix": [
            {
                "name": "chat",
                "weight": weights[0],
                "prompt_tokens": {"dist": "constant", "value": 100},
                "output_tokens": {"dist": "exponential", "mean": 300},
            },
            {
                "name": "code",
                "weight": weights[1],
                "prompt_tokens": {"dist": "uniform", "low": 1000, "high": 3000},
                "output_tokens": {"dist": "constant", "value": 20},
            },
        ],
    }


def sketches(scenario: Scenario, replications: int) -> dict[str, list[LogHistogram]]:
    """Architecture -> one TTFT sketch per replication (architectures share each workload)."""
    out: dict[str, list[LogHistogram]] = {name: [] for name in scenario.architectures}
    for r in range(replications):
        requests = generate(scenario.workload, scenario.duration_s, scenario.seed, r)
        for name in scenario.architectures:
            out[name].append(LogHistogram.of(simulate_requests(scenario, name, r, requests).ttft_s))
    return out


# ---------------------------------------------------------------- files, rows, the CLI

_CLI = CliRunner()


def write_spec(path: Path, data: dict[str, Any]) -> Path:
    """`data` as a YAML spec file at `path`."""
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def frame(df: pd.DataFrame) -> pd.DataFrame:
    """Stored rows in key order with a fresh index, for exact comparison between runs."""
    return df.sort_values(KEY).reset_index(drop=True)


def keep_stored_rows(out: Path, keep: Any) -> int:
    """Rewrite a results folder's stored rows keeping only those `keep(rows)` selects (as if
    the others had never been simulated); returns how many were dropped."""
    import shutil

    from distsim.runner.store import ResultStore, read_rows

    rows, _, _ = read_rows(out)
    mask = keep(rows)
    shutil.rmtree(out / "rows")
    with ResultStore.open(out) as store:
        store.append(rows[mask].to_dict("records"))
    return int((~mask).sum())


def part_files(out: Path) -> list[Path]:
    """The part files of a results folder (committed or not)."""
    return sorted((out / "rows").glob("scenario_id=*/part-*.parquet"))


def flip_in_column(path: Path, column: str) -> None:
    """Flip one bit near the end of `column`'s data in the Parquet file at `path` (the file keeps
    its size): damage that only reading that column's pages, checksums verified, can find. (The
    end of a column chunk is page data, which the page checksum covers; its start is a page
    header, which it does not.)"""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    chunk = meta.row_group(0).column(meta.schema.names.index(column))
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data = bytearray(path.read_bytes())
    data[start + chunk.total_compressed_size - 2] ^= 0x10
    path.write_bytes(bytes(data))


def invoke(*args: Any) -> Any:
    """`distsim ARGS` in process (Typer's CliRunner); arguments are converted with str()."""
    return _CLI.invoke(app, [str(a) for a in args])


def one_line_error(result: Any, *needles: str) -> str:
    """The single `error: ...` line of a command that failed on bad input: exit code 2, no escaped
    exception, no traceback, nothing else on stderr; each needle must appear in it."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]
