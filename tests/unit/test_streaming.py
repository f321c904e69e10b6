"""Aggregation one group of scenarios at a time gives exactly the tables of aggregating every row
at once (`aggregate.summarize` / `compare` on the whole frame, the functions the statistical tests
check against queueing theory), whatever the group size; the multiple-comparison adjustment spans
every group (checked against statsmodels' Holm on all p-values); a run's folder read back by
groups gives the same tables as its rows held in memory. No Ray: rows come from the task function.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from distsim_testkit import study_dict
from statsmodels.stats.multitest import multipletests

from distsim.runner import aggregate, precision, streaming
from distsim.runner.plan import plan_study
from distsim.runner.store import ResultStore, with_params
from distsim.runner.study import StudyResult, load_result, missing_units
from distsim.runner.task import run_batch
from distsim.spec.study import validate_study

RATE = "workload.arrival.rate_rps"


@pytest.fixture(scope="module")
def study_rows():
    # five rates, the last overloaded (untested comparisons), 4 replications of 30 s
    spec = study_dict(name="groups", duration_s=30.0, warmup_s=3.0, replications=4,
                      sweep={RATE: [1.0, 2.0, 3.0, 4.0, 12.0]})  # fmt: skip
    plan = plan_study(validate_study(spec))
    batch = run_batch({ps.id: ps.scenario for ps in plan.scenarios}, missing_units(None, plan))
    return plan, with_params(pd.DataFrame.from_records(batch.rows), plan)


def _whole(rows: pd.DataFrame, plan) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every row at once, as aggregation worked before it went by groups."""
    parsed = aggregate.Parsed()
    diag = aggregate.diagnose(rows, plan, parsed)
    summary = precision.add_flags(aggregate.summarize(rows, plan, diag=diag, parsed=parsed), plan)
    detail = aggregate.compare(rows, plan, detail=True, diag=diag, parsed=parsed)
    return summary, detail


@pytest.mark.parametrize("size", [1, 2, 64])
def test_groups_give_the_tables_of_all_rows_at_once(study_rows, size):
    plan, rows = study_rows
    agg = streaming.aggregate_groups(streaming.split_groups(rows, plan, size), plan)
    summary, detail = _whole(rows, plan)
    pd.testing.assert_frame_equal(agg.summary, summary, check_exact=True)
    pd.testing.assert_frame_equal(agg.detail, detail, check_exact=True)
    assert agg.rows_done == len(rows) == agg.rows_initial
    assert agg.counts == {ps.id: 4 for ps in plan.scenarios}
    assert not agg.detail["tested"].all()  # the overloaded scenario is in the family, untested


def test_the_adjustment_spans_every_group(study_rows):
    plan, rows = study_rows
    agg = streaming.aggregate_groups(streaming.split_groups(rows, plan, 1), plan)
    d = agg.detail
    tested = d["tested"].to_numpy(bool)
    assert tested.sum() > 10
    want = multipletests(d.loc[tested, "p_value"].to_numpy(float), method="holm")[1]
    np.testing.assert_allclose(d.loc[tested, "p_adjusted"].to_numpy(float), want, rtol=1e-12)
    assert d.loc[~tested, "p_adjusted"].isna().all()


def test_a_folder_read_by_groups_gives_the_in_memory_tables(study_rows, tmp_path):
    plan, rows = study_rows
    with ResultStore.open(tmp_path) as store:
        store.write_spec(plan.study.model_dump(mode="json"))
        for _, g in rows.groupby("scenario_id", sort=False):  # a part file per scenario
            store.append(g.drop(columns=list(plan.param_paths)).to_dict("records"))
        on_disk = streaming.aggregate_store(store, plan, size=2)
    in_memory = streaming.aggregate_groups(streaming.split_groups(rows, plan), plan)
    for a, b in ((on_disk.summary, in_memory.summary), (on_disk.detail, in_memory.detail)):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        # the manifest's counts, from the commit log alone, are those of the rows read
        assert streaming.count_used(store, plan) == (
            on_disk.rows_done,
            on_disk.rows_initial,
            on_disk.counts,
        )
    loaded = load_result(tmp_path)  # `distsim report`: the same tables, rows read lazily
    pd.testing.assert_frame_equal(loaded.summary, in_memory.summary, check_exact=True)
    assert loaded.rows_in_memory is None and loaded.complete
    first = plan.scenarios[0].id
    some = loaded.rows([first])
    assert set(some["scenario_id"]) == {first} and len(some) == 2 * 4
    assert len(loaded.replications) == len(rows)


def test_an_in_memory_result_reads_its_own_rows(study_rows, tmp_path):
    plan, rows = study_rows
    summary, comparisons, detail = streaming.aggregate_groups([rows], plan).summary, None, None
    result = StudyResult(plan.study, plan, tmp_path, rows, summary, pd.DataFrame(), pd.DataFrame())
    assert result.complete and result.row_counts() == (len(rows), len(rows))
    assert sum(len(g) for g in result.iter_rows(batch_scenarios=2)) == len(rows)
    assert comparisons is None and detail is None


class _LocalSession:
    """Stands in for `execute.RaySession.map_tasks`: runs each chunk after a pickle round trip
    (as Ray ships it), the second chunk's task "fails" (the driver must redo it)."""

    def __init__(self, cpus: int) -> None:
        self.info = type("Info", (), {"cpus": cpus, "nodes": 1})()
        self.chunks: list[list[str]] = []

    def map_tasks(self, fn, shared, items):
        import pickle

        for k, item in enumerate(items):
            self.chunks.append(item)
            if k == 1:
                yield RuntimeError("worker died")
                continue
            yield pickle.loads(pickle.dumps(fn(*pickle.loads(pickle.dumps((shared, item))))))


def test_fanned_out_chunks_give_the_serial_tables(study_rows, tmp_path, monkeypatch):
    plan, rows = study_rows
    with ResultStore.open(tmp_path) as store:
        store.write_spec(plan.study.model_dump(mode="json"))
        store.append(rows.drop(columns=list(plan.param_paths)).to_dict("records"))
        serial = streaming.aggregate_store(store, plan)
        monkeypatch.setattr(streaming, "FAN_OUT_SCENARIOS", 2)
        session = _LocalSession(cpus=2)
        assert streaming.fan_out_session(session, plan) is session
        fanned = streaming.aggregate_store(store, plan, size=1, session=session)
    assert len(session.chunks) == 5  # one scenario per chunk: 2 CPUs x 3 chunks, 5 scenarios
    for a, b in ((fanned.summary, serial.summary), (fanned.detail, serial.detail),
                 (fanned.diagnosis, serial.diagnosis)):  # fmt: skip
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert (fanned.rows_done, fanned.counts) == (serial.rows_done, serial.counts)
    one_cpu = _LocalSession(cpus=1)
    assert streaming.fan_out_session(one_cpu, plan) is None


@pytest.mark.parametrize(("replications", "expected"), [(10, 64), (1000, 4), (5000, 1)])
def test_a_group_holds_at_most_group_rows_of_many_replications(replications, expected):
    plan = plan_study(validate_study(study_dict(replications=replications)))
    assert streaming.group_size(plan) == expected  # 8192 // (2 architectures x replications)
    assert streaming.group_size(plan) * 2 * replications <= max(streaming.GROUP_ROWS, 2 * 5000)


def test_a_group_holds_at_most_group_bytes_of_stored_rows(study_rows, tmp_path, monkeypatch):
    """Rows of long runs carry large sketches: a group is also bounded by the stored Parquet of
    its largest scenario (the part files' sizes on disk), and the tables do not change."""
    plan, rows = study_rows
    with ResultStore.open(tmp_path) as store:
        store.append(rows.drop(columns=[RATE]).to_dict("records"))
        assert streaming.group_size(plan, store) == streaming.group_size(plan) == 64
        sizes = {}
        for f in (tmp_path / "rows").glob("scenario_id=*/part-*.parquet"):
            sizes[f.parent.name] = sizes.get(f.parent.name, 0) + f.stat().st_size
        monkeypatch.setattr(streaming, "GROUP_BYTES", 2 * max(sizes.values()) + 1)
        assert streaming.group_size(plan, store) == 2
        small = streaming.aggregate_store(store, plan)
        whole = streaming.aggregate_store(store, plan, size=64)
    for a, b in ((small.summary, whole.summary), (small.comparisons, whole.comparisons)):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
