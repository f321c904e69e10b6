"""A results folder written by the code before rows/ (`tests/data/legacy_store/folder`, made by
`make_legacy.py` at commit e6d0ff6): read as it is, then moved into rows/ by the first run, every
row kept exactly once and none simulated again.

The truth is the old files read with pandas alone (replications.parquet without its parameter
column, kept.parquet, the leftover part file; first copy of each key), not through the store.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from distsim_testkit import frame, invoke, tiny_study

from distsim.runner.store import KEY, ResultStore, read_rows
from distsim.runner.study import run_study

LEGACY = Path(__file__).resolve().parents[1] / "data" / "legacy_store" / "folder"
RATE = "workload.arrival.rate_rps"


@pytest.fixture
def folder(tmp_path) -> Path:
    out = tmp_path / "old"
    shutil.copytree(LEGACY, out)
    return out


def truth() -> pd.DataFrame:
    published = pd.read_parquet(LEGACY / "replications.parquet").drop(columns=[RATE])
    kept = pd.read_parquet(LEGACY / "kept.parquet")
    (part,) = (LEGACY / "parts").glob("part-*.parquet")
    rows = pd.concat([published, kept, pd.read_parquet(part)], ignore_index=True)
    assert rows.duplicated(KEY).sum() == 2  # the part repeats two kept rows
    return frame(rows.drop_duplicates(KEY))


def test_an_old_folder_is_read_as_it_is_without_changing_it(folder):
    files = [p for p in folder.rglob("*.parquet")]
    before = {p: p.read_bytes() for p in files}
    rows, notes, _ = read_rows(folder)
    assert not notes
    pd.testing.assert_frame_equal(frame(rows), truth(), check_exact=True)
    report = invoke("report", folder)  # read-only: tables from the old files
    assert report.exit_code == 0, report.output
    assert "rows stored" not in report.stderr  # complete: every planned row found
    assert {p: p.read_bytes() for p in files} == before  # no row file touched ...
    assert not (folder / "rows").exists()  # ... and nothing moved by a read


def test_the_first_run_moves_every_row_into_rows_and_simulates_none(folder):
    result = run_study(tiny_study("legacy", replications=3), out_dir=folder, progress=False)
    assert (result.rows_reused, result.rows_simulated, result.tasks) == (12, 0, 0)
    assert not (folder / "kept.parquet").exists() and not (folder / "parts").exists()
    rows, _, _ = read_rows(folder)
    pd.testing.assert_frame_equal(frame(rows), truth(), check_exact=True)
    exported = pd.read_parquet(folder / "replications.parquet")
    assert len(exported) == 12 and not exported.duplicated(KEY).any()
    pd.testing.assert_frame_equal(frame(exported.drop(columns=[RATE])), truth(), check_exact=True)
    with ResultStore.open(folder) as store:  # a second open changes nothing
        assert sum(e["rows"] for e in store.log.live()) == 12
