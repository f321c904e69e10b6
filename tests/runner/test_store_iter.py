"""`ResultStore.iter_rows` / `read_scenario_rows`: the plan's rows a group of whole scenarios at a
time, exactly the rows `read_rows` gives (duplicates, kept rows, part files, old ids), never
reading the row groups of other scenarios and never holding more than one group.

The truth is the whole-folder read (`read_rows` + `select_plan_rows` + `with_params`), which
reads every file in one piece; rows are built by hand (no simulation, no Ray).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from distsim_testkit import tiny_study

import distsim.runner.store as store_mod
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


def test_a_group_reads_only_the_row_groups_holding_its_scenarios(tmp_path, monkeypatch):
    """Memory bound: iteration never holds more than one group's rows, and of
    replications.parquet (row groups of 4 rows = one scenario each) reads only the row groups
    of the group's scenarios, in batches of at most `_READ_BATCH_ROWS` rows."""
    plan = _plan(tuple(float(r) for r in range(1, 11)))
    _folder(tmp_path, plan, _plan((99.0,)))
    monkeypatch.setattr(store_mod, "_READ_BATCH_ROWS", 3)
    read_groups: list[tuple[str, list[int]]] = []
    batch_rows: list[int] = []
    real = pq.ParquetFile.iter_batches

    def spy(self, *args, **kwargs):
        read_groups.append((str(self.metadata.num_rows), list(kwargs["row_groups"])))
        for b in real(self, *args, **kwargs):
            batch_rows.append(b.num_rows)
            yield b

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    store = ResultStore.reader(tmp_path)
    rg = pq.ParquetFile(tmp_path / REPLICATIONS_FILE).metadata.num_row_groups
    assert rg == 10  # 40 rows in row groups of 4
    held = []
    for k, frame in enumerate(store.iter_rows(plan, batch_scenarios=2)):
        held.append(len(frame))
        mine = [g for n, g in read_groups if n == "40"]
        assert mine[-1] == [2 * k, 2 * k + 1]  # this group's two scenarios' row groups only
    assert max(batch_rows) <= 3
    assert held == [2 * 2 * 3] * 5  # 2 scenarios x 2 architectures x 3 replications


def test_a_damaged_part_is_skipped_with_a_note(tmp_path):
    plan = _plan((1.0, 2.0))
    _folder(tmp_path, plan, _plan((9.0,)))
    part = sorted((tmp_path / "parts").glob("part-*.parquet"))[-1]
    part.write_bytes(part.read_bytes()[:40])
    store = ResultStore.reader(tmp_path)
    got = pd.concat(store.iter_rows(plan), ignore_index=True)
    assert np.all(got["replication"] < 3)
    assert len(got) == 2 * 2 * 2 + 2  # the part's replication-2 rows are gone, kept's stay
    assert any("skipped" in n for n in store.read_notes)
