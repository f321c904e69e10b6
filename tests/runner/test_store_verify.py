"""Checksums are verified as parts are read, not when a folder is opened: opening costs the
commit log and one listing, whatever the data's size, and damage is still never a changed
number (no Ray: rows from `run_batch`, as a worker returns them).

Truth: the rows `run_batch` returns (the same deterministic simulation); each fault is made by
hand: a part cut short (its size no longer the committed one), one bit flipped inside a column
(the size unchanged).
"""

from __future__ import annotations

import pandas as pd
import pytest
from distsim_testkit import flip_in_column, frame, part_files, tiny_study

import distsim.runner.store as store_mod
from distsim.errors import StoreError
from distsim.runner import streaming
from distsim.runner.plan import plan_study
from distsim.runner.store import DamagedPartError, ResultStore, read_rows
from distsim.runner.task import Unit, run_batch
from distsim.spec.study import validate_study


@pytest.fixture(scope="module")
def plan():
    return plan_study(validate_study(tiny_study(replications=3)))


@pytest.fixture(scope="module")
def truth(plan) -> pd.DataFrame:
    units = [Unit(ps.id, r, tuple(plan.architectures)) for ps in plan.scenarios for r in range(3)]
    return frame(pd.DataFrame(run_batch({ps.id: ps.scenario for ps in plan.scenarios}, units).rows))


@pytest.fixture
def folder(plan, truth, tmp_path):
    """A finished folder: every row stored, one consolidated part per scenario."""
    with ResultStore.open(tmp_path) as store:
        store.append(truth.to_dict("records"))
        store.consolidate(plan)
    assert len(part_files(tmp_path)) == len(plan.scenarios)
    return tmp_path


def _sid(part) -> str:
    return part.parent.name.split("=", 1)[1]


def test_opening_reads_no_committed_part(folder, monkeypatch):
    def no_read(*args, **kwargs):
        raise AssertionError("a committed part was read when the folder was opened")

    monkeypatch.setattr(store_mod, "read_table", no_read)
    with ResultStore.open(folder) as store:
        assert store.notes == [] and store.damaged == []


def test_a_part_cut_short_is_set_aside_at_open(plan, truth, folder):
    part = part_files(folder)[0]
    part.write_bytes(part.read_bytes()[:-7])
    with ResultStore.open(folder) as store:
        assert not part.exists() and len(list(folder.rglob("*.corrupt-*"))) == 1
        keys = streaming.plan_keys(store, plan)
    assert _sid(part) not in set(keys["scenario_id"])
    expected = truth[truth["scenario_id"] != _sid(part)].reset_index(drop=True)
    pd.testing.assert_frame_equal(frame(read_rows(folder)[0]), expected, check_exact=True)


def test_a_flipped_bit_is_found_when_the_part_is_read_then_set_aside(plan, truth, folder):
    part = part_files(folder)[0]
    flip_in_column(part, "ttft_sketch")
    # A read-only reader: one line with the recovery, nothing renamed.
    with pytest.raises(StoreError, match="unreadable, damaged.*run the study again") as info:
        read_rows(folder)
    assert "\n" not in str(info.value) and part.exists()
    with ResultStore.open(folder) as store:
        assert part.exists()  # opening does not read it
        keys = streaming.plan_keys(store, plan)  # key columns only: intact
        assert len(keys) == len(truth)
        with pytest.raises(DamagedPartError, match="set aside as .*simulated again") as info:
            store.consolidate(plan)  # the export reads every column
        assert info.value.entry["path"].endswith(part.name)
        assert [e["path"] for e, _ in store.damaged] == [info.value.entry["path"]]
        assert not part.exists() and len(list(folder.rglob("*.corrupt-*"))) == 1
        store.consolidate(plan)  # the other parts are intact
    expected = truth[truth["scenario_id"] != _sid(part)].reset_index(drop=True)
    pd.testing.assert_frame_equal(frame(read_rows(folder)[0]), expected, check_exact=True)


def test_a_flipped_bit_in_a_key_column_is_found_when_the_run_plans(plan, truth, folder):
    part = part_files(folder)[-1]
    flip_in_column(part, "replication")
    with ResultStore.open(folder) as store:
        with pytest.raises(DamagedPartError):
            streaming.plan_keys(store, plan)
        keys = streaming.plan_keys(store, plan)
    assert len(keys) == len(truth) - int((truth["scenario_id"] == _sid(part)).sum())


def test_a_selection_reading_every_row_sets_a_damaged_part_aside_first(plan, truth, folder):
    """`distsim select` reads every stored row at once (`ResultStore.all_rows`): the damaged
    part's rows are missing (so they are simulated again), the others are all there, noted."""
    part = part_files(folder)[0]
    flip_in_column(part, "e2e_sketch")
    with ResultStore.open(folder) as store:
        rows, notes = store.all_rows()
    assert not part.exists() and any("set aside" in n for n in notes)
    expected = truth[truth["scenario_id"] != _sid(part)].reset_index(drop=True)
    pd.testing.assert_frame_equal(frame(rows), expected, check_exact=True)
