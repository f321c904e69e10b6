"""Nothing changes for users when the code moves: the rows of a few shipped studies (shortened)
are bit-identical to those the code produced before the package layout changed.

The reference (`tests/data/golden/rows_0079beb.parquet`) was written by
`tests/data/golden/make_golden.py` run on commit 0079beb. A deliberate change of what is simulated
(a model fix) regenerates it with the commit that makes the change, saying so in its message.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "data" / "golden"
sys.path.insert(0, str(GOLDEN))

import make_golden  # noqa: E402

# Scenario ids of studies that read a data file hashed the file's absolute path when the reference
# was written (0079beb, in another checkout); they now hash the file's content (the same on every
# machine: tests/runner/test_data_travels.py), so these ids differ from the reference and only
# these. Rows stored under the old ids are adopted by `Plan.id_aliases`.
PATH_DEPENDENT_IDS = {"studies/azure_code_batched.yaml"}


@pytest.fixture(scope="module")
def now() -> pd.DataFrame:
    import os

    cwd = os.getcwd()
    os.chdir(ROOT)  # the studies name their data files relative to themselves; paths as shipped
    try:
        return make_golden.rows()
    finally:
        os.chdir(cwd)


def test_rows_match_the_reference_exactly(now: pd.DataFrame) -> None:
    before = pd.read_parquet(GOLDEN / "rows_0079beb.parquet")
    assert sorted(now.columns) == sorted(before.columns)
    now = now[list(before.columns)]
    for frame in (before, now):  # rows are produced in plan order: number the scenarios
        frame["scenario_index"] = frame.groupby("study")["scenario_id"].transform(
            lambda ids: pd.factorize(ids)[0]
        )
        frame.loc[frame["study"].isin(PATH_DEPENDENT_IDS), "scenario_id"] = ""
    key = ["study", "scenario_index", "architecture", "replication"]
    a = before.sort_values(key).reset_index(drop=True)
    b = now.sort_values(key).reset_index(drop=True)
    assert len(a) == len(b) == 126
    pd.testing.assert_frame_equal(a, b, check_exact=True)
