"""Parts written by tasks, and the commit log that decides which parts count (no Ray: `run_batch`
is called directly, as a worker would).

Truth: the rows `run_batch` returns when the driver writes them (the same deterministic
simulation), and keys counted by hand. Each fault is made by hand: a retried task that wrote two
parts, a driver that died before committing, a worker whose node sees another folder, a commit
log folded while a reader lists it.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from distsim_testkit import frame, part_files, tiny_study

import distsim.runner.parts as parts_mod
from distsim.errors import StoreError
from distsim.runner.location import Location
from distsim.runner.parts import CommitLog, PartSink, ranges
from distsim.runner.plan import plan_study
from distsim.runner.store import KEY, ResultStore, read_rows
from distsim.runner.task import Unit, run_batch
from distsim.spec.study import validate_study


@pytest.fixture(scope="module")
def plan():
    return plan_study(validate_study(tiny_study(replications=3)))


def _units(plan, reps=range(3)):
    return [Unit(ps.id, r, tuple(plan.architectures)) for ps in plan.scenarios for r in reps]


def _scenarios(plan):
    return {ps.id: ps.scenario for ps in plan.scenarios}


@pytest.fixture(scope="module")
def truth(plan) -> pd.DataFrame:
    """The rows as the driver receives them when the task sends them back."""
    return frame(pd.DataFrame(run_batch(_scenarios(plan), _units(plan)).rows))


def test_ranges_by_hand():
    assert ranges([5, 0, 2, 1, 1]) == [[0, 2], [5, 5]]
    assert ranges([]) == []


def test_a_task_writes_its_parts_and_returns_only_their_entries(plan, truth, tmp_path):
    with ResultStore.open(tmp_path) as store:
        sink = store.worker_sink(nodes=2)
        assert sink is not None and store.worker_sink(nodes=1) is None  # local, one node
        result = run_batch(_scenarios(plan), _units(plan), sink=sink)
        assert result.rows == [] and result.row_count == len(truth)
        # one part per scenario of the batch, named by content hash + attempt token
        assert sorted(e["scenario_id"] for e in result.parts) == sorted(
            ps.id for ps in plan.scenarios
        )
        assert all(e["keys"] == {a: [[0, 2]] for a in plan.architectures} for e in result.parts)
        assert read_rows(tmp_path)[0].empty  # not committed yet: not counted
        store.commit_parts(result.parts)
        store.consolidate(plan)
        got = store.plan_rows(plan)
    pd.testing.assert_frame_equal(frame(read_rows(tmp_path)[0]), truth, check_exact=True)
    assert len(got) == len(truth) and not got.duplicated(KEY).any()


def test_a_retried_task_and_a_dead_driver_count_every_row_once(plan, truth, tmp_path):
    """Two attempts of one task both wrote their parts (the first one's worker died after
    writing); the driver committed only the second. A later run finds the first attempt's
    parts uncommitted, checks them and commits them: duplicates, read once."""
    with ResultStore.open(tmp_path) as store:
        sink = store.worker_sink(nodes=2)
        first = run_batch(_scenarios(plan), _units(plan), sink=sink)
        second = run_batch(_scenarios(plan), _units(plan), sink=sink)
        # part-w<content hash>-<attempt token>-<scenario id>.parquet
        a = {e["path"].split("/part-")[1].split("-")[0] for e in first.parts}
        b = {e["path"].split("/part-")[1].split("-")[0] for e in second.parts}
        assert a == b  # same content hash ...
        assert not {e["path"] for e in first.parts} & {e["path"] for e in second.parts}  # ...
        store.commit_parts(second.parts)  # ... but the attempt tokens differ
    assert len(part_files(tmp_path)) == 2 * len(plan.scenarios)
    with ResultStore.open(tmp_path) as store:  # the next run: the orphans are committed
        live = store.log.live()
        assert len(live) == 2 * len(plan.scenarios)
        store.consolidate(plan)
        assert len(part_files(tmp_path)) == len(plan.scenarios)  # merged, one per scenario
        got = store.plan_rows(plan)
    assert not got.duplicated(KEY).any()
    pd.testing.assert_frame_equal(frame(read_rows(tmp_path)[0]), truth, check_exact=True)


def test_a_node_that_sees_another_folder_sends_its_rows_back(plan, truth, tmp_path):
    with ResultStore.open(tmp_path / "here") as store:
        sink = store.worker_sink(nodes=2)
    # Same folder name on "another node": the probe is not there, or holds another token.
    elsewhere = PartSink(str(tmp_path / "there"), sink.probe)
    result = run_batch(_scenarios(plan), _units(plan, [0]), sink=elsewhere)
    assert result.parts == [] and len(result.rows) == 2 * len(plan.architectures)
    assert not (tmp_path / "there").exists()  # nothing written where the driver cannot see
    wrong = PartSink(sink.uri, "another token")
    assert run_batch(_scenarios(plan), _units(plan, [0]), sink=wrong).parts == []


def test_a_part_the_driver_cannot_see_is_a_one_line_error(plan, tmp_path):
    with ResultStore.open(tmp_path) as store:
        sink = store.worker_sink(nodes=2)
        result = run_batch(_scenarios(plan), _units(plan, [0]), sink=sink)
        (tmp_path / result.parts[0]["path"]).unlink()
        with pytest.raises(StoreError, match="a task wrote this part but it is not visible"):
            store.commit_parts(result.parts)


def test_commits_from_two_writers_add_up_and_folding_keeps_every_part(plan, truth, tmp_path):
    rows = truth.to_dict("records")
    with ResultStore.open(tmp_path) as store:
        store.append(rows[:4])
        # another writer's commit (an object-store run without the lock): its own object
        other = ResultStore(store.loc, tmp_path, -1)
        other.append(rows[4:])
        assert len(store.log.live()) == len(other.log.live())
        assert len(list((tmp_path / "rows" / "_commits").iterdir())) == 2
        store.log.fold(force=True)
        (commit,) = (tmp_path / "rows" / "_commits").iterdir()
        assert len(json.loads(commit.read_text())["supersedes"]) == 2
    pd.testing.assert_frame_equal(frame(read_rows(tmp_path)[0]), truth, check_exact=True)


def test_a_reader_that_lists_a_commit_folded_away_lists_again(plan, truth, tmp_path, monkeypatch):
    rows = truth.to_dict("records")
    with ResultStore.open(tmp_path) as store:
        for k in range(0, len(rows), 4):
            store.append(rows[k : k + 4])
    log = CommitLog(ResultStore.reader(tmp_path).loc)
    real = Location.listdir
    calls = []

    def listdir(self, rel, **kwargs):  # the first listing is taken just before a fold
        out = real(self, rel, **kwargs)
        if rel == parts_mod.COMMITS_DIR and not calls:
            calls.append(1)
            CommitLog(self).fold(force=True)
        return out

    monkeypatch.setattr(Location, "listdir", listdir)
    entries = log.live()
    assert calls and len(list((tmp_path / "rows" / "_commits").iterdir())) == 1
    assert sum(e["rows"] for e in entries) == len(truth)


def test_the_earlier_layout_is_migrated_one_batch_at_a_time(plan, truth, tmp_path):
    """A folder of the earlier layout (replications.parquet holding the plan's rows with the
    parameter column, kept.parquet, a part file): read as it is, then moved into rows/ by the
    first run that opens it, every row once, the old files gone only after the commit."""
    import distsim.runner.store as store_mod

    published = store_mod.with_params(truth[truth["replication"] < 2], plan)
    store_mod._write_parquet(tmp_path / "replications.parquet", store_mod.to_table(published, plan))
    store_mod._write_parquet(
        tmp_path / "kept.parquet", store_mod._plain_table(truth[truth["replication"] == 2])
    )
    (tmp_path / "parts").mkdir()
    store_mod._write_parquet(
        tmp_path / "parts" / "part-old-000001.parquet", store_mod._plain_table(truth.iloc[:3])
    )
    before, _, _ = read_rows(tmp_path)
    pd.testing.assert_frame_equal(frame(before), truth, check_exact=True)
    with ResultStore.open(tmp_path):
        pass
    assert not (tmp_path / "kept.parquet").exists() and not (tmp_path / "parts").exists()
    assert not (tmp_path / "replications.parquet").exists()
    after, _, _ = read_rows(tmp_path)
    pd.testing.assert_frame_equal(frame(after), truth, check_exact=True)
