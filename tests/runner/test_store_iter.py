"""`ResultStore.iter_rows` / `read_scenario_rows`: the plan's rows a group of whole scenarios at a
time, exactly the rows `read_rows` gives (duplicates, kept rows, part files, old ids), never
reading the row groups of other scenarios and never holding more than one group.

The truth is the whole-folder read (`read_rows` + `select_plan_rows` + `with_params`), which
reads every file in one piece; rows are built by hand (no simulation, no Ray).
"""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest
from distsim_testkit import tiny_study

import distsim.runner.store as store_mod
from distsim.errors import StoreError
from distsim.runner.plan import plan_study
from distsim.runner.store import (
    KEPT_FILE,
    REPLICATIONS_FILE,
    ResultStore,
    read_rows,
    select_plan_rows,
    to_table,
    with_params,
)
from distsim.spec.study import validate_study


def _plan(rates: tuple[float, ...], replications: int = 3):
    return plan_study(validate_study(tiny_study(rates=rates, replications=replications)))


def _row(sid: str, arch: str, rep: int, value: float) -> dict:
    return {"scenario_id": sid, "architecture": arch, "replication": rep, "seed": 7,
            "ttft_mean_s": value, "n_requests": 10, "ttft_sketch": f"s{value}"}  # fmt: skip


def _folder(tmp_path, plan, other_plan):
    """replications.parquet in small row groups, kept.parquet, and parts with duplicates."""
    archs = plan.architectures
    rows = [
        _row(ps.id, a, r, 100 * i + 10 * j + r)
        for i, ps in enumerate(plan.scenarios)
        for j, a in enumerate(archs)
        for r in range(2)
    ]
    published = with_params(pd.DataFrame(rows), plan)
    pq.write_table(to_table(published, plan), tmp_path / REPLICATIONS_FILE, row_group_size=4)
    # kept: rows of another plan's scenario, and replication 2 of the first scenario
    kept = [_row(other_plan.scenarios[-1].id, archs[0], 0, -1.0)]
    kept += [_row(plan.scenarios[0].id, a, 2, 1000.0) for a in archs]
    store_mod._write_parquet(tmp_path / KEPT_FILE, pd.DataFrame(kept).pipe(store_mod._plain_table))
    with ResultStore.open(tmp_path) as store:
        # a duplicate of a stored row with another value: the first copy (replications) wins
        store.append([_row(plan.scenarios[1].id, archs[0], 0, -5.0)])
        store.append([_row(ps.id, a, 2, 2000.0 + k) for k, ps in enumerate(plan.scenarios)
                      for a in archs])  # fmt: skip
    return published


def _truth(tmp_path, plan) -> pd.DataFrame:
    rows, _, _ = read_rows(tmp_path, plan.id_aliases)
    return with_params(select_plan_rows(rows, plan), plan)


@pytest.mark.parametrize("batch", [1, 2, 5, 100])
def test_groups_together_are_exactly_the_whole_read(tmp_path, batch):
    plan = _plan((1.0, 2.0, 3.0, 4.0, 5.0))
    _folder(tmp_path, plan, _plan((9.0,)))
    store = ResultStore.reader(tmp_path)
    frames = list(store.iter_rows(plan, batch_scenarios=batch))
    assert len(frames) == -(-len(plan.scenarios) // batch)
    ids = [ps.id for ps in plan.scenarios]
    for k, f in enumerate(frames):  # whole scenarios, each in exactly one group
        assert set(f["scenario_id"]) == set(ids[k * batch : (k + 1) * batch])
    got = pd.concat(frames, ignore_index=True)
    pd.testing.assert_frame_equal(got, _truth(tmp_path, plan), check_exact=True)
    # hand-checked: the first scenario's replication 2 comes from kept.parquet, the second
    # scenario's replication 0 from replications.parquet (not the part's duplicate)
    first = got[(got["scenario_id"] == ids[0]) & (got["replication"] == 2)]
    assert first["ttft_mean_s"].tolist() == [1000.0, 1000.0]
    dup = got[(got["scenario_id"] == ids[1]) & (got["replication"] == 0)]
    assert dup["ttft_mean_s"].tolist() == [100.0, 110.0]
    assert len(got) == len(ids) * len(plan.architectures) * 3


def test_read_scenario_rows_and_columns(tmp_path):
    plan = _plan((1.0, 2.0, 3.0))
    _folder(tmp_path, plan, _plan((9.0,)))
    store = ResultStore.reader(tmp_path)
    ids = [plan.scenarios[2].id, plan.scenarios[0].id]
    got = store.read_scenario_rows(plan, ids)
    truth = _truth(tmp_path, plan)
    want = truth[truth["scenario_id"].isin(ids)].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    light = store.read_scenario_rows(plan, ids, columns=["ttft_mean_s"])
    assert "ttft_sketch" not in light.columns
    assert light["ttft_mean_s"].tolist() == want["ttft_mean_s"].tolist()
    assert store.read_scenario_rows(plan, []).empty


def test_a_group_reads_only_the_part_files_of_its_scenarios(tmp_path, monkeypatch):
    """Memory bound: iteration never holds more than one group's rows, and reads only the part
    files in its scenarios' folders (rows/scenario_id=<id>/), one file at a time."""
    plan = _plan(tuple(float(r) for r in range(1, 11)))
    _folder(tmp_path, plan, _plan((99.0,)))
    read: list[str] = []
    real = store_mod.read_table

    def spy(loc, rel, columns=None):
        read.append(rel)
        return real(loc, rel, columns)

    monkeypatch.setattr(store_mod, "read_table", spy)
    store = ResultStore.reader(tmp_path)
    held = []
    for k, frame in enumerate(store.iter_rows(plan, batch_scenarios=2)):
        held.append(len(frame))
        mine = {f"rows/scenario_id={ps.id}" for ps in plan.scenarios[2 * k : 2 * k + 2]}
        assert read and {r.rsplit("/", 1)[0] for r in read} == mine
        read.clear()
    assert held == [2 * 2 * 3] * 5  # 2 scenarios x 2 architectures x 3 replications


def test_a_damaged_part_stops_a_reader_and_a_run_sets_it_aside(tmp_path):
    plan = _plan((1.0, 2.0))
    _folder(tmp_path, plan, _plan((9.0,)))
    folder = tmp_path / "rows" / f"scenario_id={plan.scenarios[1].id}"
    part = sorted(folder.glob("part-*.parquet"), key=lambda p: p.stat().st_mtime)[-1]
    assert pq.read_table(part)["replication"].to_pylist() == [2, 2]
    part.write_bytes(part.read_bytes()[:40])
    with pytest.raises(StoreError, match="unreadable.*run the study again") as info:
        list(ResultStore.reader(tmp_path).iter_rows(plan))
    assert "\n" not in str(info.value)
    with ResultStore.open(tmp_path):  # a run: set aside, kept for inspection
        pass
    store = ResultStore.reader(tmp_path)
    got = pd.concat(store.iter_rows(plan), ignore_index=True)
    assert len(got) == 2 * 2 * 3 - 2  # the part's two replication-2 rows are gone
    assert any("set aside" in n for n in store.read_notes)
