"""The study runner end to end: determinism across workers and nodes, resume after SIGKILL,
failures, retries, reuse of stored rows, the store's files, and cluster.yaml.

One Ray cluster for the module: a two-node `ray.cluster_utils.Cluster` on 127.0.0.1. This process
stays connected to it (one session, warm workers), so in-process `run_study` calls use it as an
already-initialised session. `distsim run --address` in a subprocess joins the same cluster the
way a user would (shipping distsim in the runtime env); `distsim run --workers N` subprocesses
start their own local Ray.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from distsim_testkit import frame, part_files, tiny_study, write_spec

from distsim.errors import StoreError
from distsim.runner.plan import plan_study
from distsim.runner.store import KEY, MERGE_ABOVE_PARTS, ResultStore, in_plan, read_rows
from distsim.runner.study import run_study
from distsim.spec.study import validate_study

ROOT = Path(__file__).resolve().parents[2]
RATE = "workload.arrival.rate_rps"


def tiny(replications: int = 24, rates: tuple[float, ...] = (5.0, 7.0), **changes: Any) -> dict:
    """Two scenarios, two architectures, 30 s runs: ~150-210 requests per replication."""
    name = changes.pop("name", "tiny")
    return tiny_study(name, replications, rates, **({"duration_s": 30.0} | changes))


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "distsim", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def stored(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "replications.parquet")


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
    )
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    ray.init(address=c.address, logging_level="ERROR", log_to_driver=False)
    try:
        nodes = [n for n in ray.nodes() if n["Alive"]]
        assert len(nodes) == 2
        assert {n["NodeManagerAddress"] for n in nodes} == {"127.0.0.1"}
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory) -> Path:
    return write_spec(tmp_path_factory.mktemp("spec") / "tiny.yaml", tiny())


@pytest.fixture(scope="module")
def reference(spec_path, tmp_path_factory) -> pd.DataFrame:
    """The study run once, uninterrupted, as a subprocess on a local 2-CPU Ray."""
    out = tmp_path_factory.mktemp("ref") / "out"
    proc = cli("run", str(spec_path), "--out", str(out), "--workers", "2", "--quiet")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["nodes"], manifest["cpus"]) == (1, 2)
    return stored(out)


# ---------------------------------------------------------------- determinism


@pytest.mark.slow
def test_same_numbers_on_1_worker_2_workers_and_a_two_node_cluster(
    spec_path, reference, cluster, tmp_path
):
    proc = cli("run", str(spec_path), "--out", str(tmp_path / "one"), "--workers", "1", "--quiet")
    assert proc.returncode == 0, proc.stderr
    one = stored(tmp_path / "one")
    # Join the two-node cluster as a user would: the driver ships its distsim to the workers.
    joined = cli("run", str(spec_path), "--out", str(tmp_path / "cl"), "--quiet",
                 "--address", cluster.address)  # fmt: skip
    assert joined.returncode == 0, joined.stderr
    manifest = json.loads((tmp_path / "cl" / "manifest.json").read_text())
    assert (manifest["nodes"], manifest["cpus"]) == (2, 2)
    plan = plan_study(validate_study(tiny()))
    assert len(reference) == plan.rows == 2 * 2 * 24
    pd.testing.assert_frame_equal(frame(one), frame(reference), check_exact=True)
    pd.testing.assert_frame_equal(
        frame(stored(tmp_path / "cl")), frame(reference), check_exact=True
    )


@pytest.mark.slow
def test_in_process_study_uses_the_running_session(cluster, tmp_path, reference):
    result = run_study(tiny(), out_dir=tmp_path, workers=1, progress=False)
    assert (result.nodes, result.cpus) == (2, 2)  # the session's cluster, not 1 worker
    assert any("--workers does not apply" in n for n in result.notes)
    pd.testing.assert_frame_equal(frame(result.replications), frame(reference), check_exact=True)


@pytest.mark.slow
def test_published_rows_layout_and_common_random_numbers(reference):
    assert list(reference.columns[:5]) == [
        "scenario_id", RATE, "architecture", "replication", "seed",
    ]  # fmt: skip
    assert {"n_requests", "ttft_mean_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s"} <= set(
        reference.columns
    )
    assert not reference.duplicated(KEY).any()
    # Both architectures of a replication measured the same requests; replications differ.
    wide = reference.pivot_table(
        index=["scenario_id", "replication"], columns="architecture", values="n_requests"
    )
    assert (wide["monolithic"] == wide["disaggregated"]).all()
    assert wide["monolithic"].nunique() > 5
    # The swept parameter column holds each scenario's value.
    by_rate = reference.groupby(RATE)["n_requests"].mean()
    assert by_rate[7.0] > by_rate[5.0]


# ---------------------------------------------------------------- resume after SIGKILL


@pytest.mark.slow
def test_resume_after_sigkill_equals_an_uninterrupted_run(spec_path, reference, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "distsim", "run", str(spec_path), "--out", str(out),
           "--workers", "1", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 180
        while not list((out / "rows" / "_commits").glob("*.json")):  # a committed part
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "no replication finished in time"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)  # the driver dies mid-study
        proc.wait(timeout=30)
    finally:
        # The driver's local Ray processes share its process group; clean them up too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "replications.parquet").exists()  # killed before the end
    saved, _, _ = read_rows(out)
    plan = plan_study(validate_study(tiny()))
    assert 0 < len(saved) < plan.rows

    again = cli("run", str(spec_path), "--out", str(out), "--workers", "1", "--quiet")
    assert again.returncode == 0, again.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    # A part written just before the kill, not yet committed, is checked and reused too.
    assert manifest["rows_reused"] >= len(saved)
    assert manifest["rows_simulated"] == plan.rows - manifest["rows_reused"]
    assert manifest["status"] == "complete"
    final = stored(out)
    assert not final.duplicated(KEY).any() and len(final) == plan.rows
    assert not (out / "parts").exists()
    pd.testing.assert_frame_equal(frame(final), frame(reference), check_exact=True)


# ---------------------------------------------------------------- failures and retries


@pytest.mark.slow
def test_a_failing_replication_is_reported_and_the_rest_completes(
    cluster, tmp_path, monkeypatch, reference
):
    import distsim.runner.execute as execute

    def faulty_batch(scenarios, units, *rest, **kwargs):  # runs on the workers (by value)
        import distsim.runner.task as task

        real = task.simulate_requests

        def boom(scenario, arch, replication, requests):
            if arch == "disaggregated" and replication == 2:
                raise RuntimeError("injected fault")
            return real(scenario, arch, replication, requests)

        task.simulate_requests = boom
        try:
            return task.run_batch(scenarios, units, *rest, **kwargs)
        finally:
            task.simulate_requests = real

    spec = tiny()
    monkeypatch.setattr(execute, "run_batch", faulty_batch)
    first = run_study(spec, out_dir=tmp_path, progress=False)
    plan = first.plan
    assert sorted((f["scenario_id"], f["architecture"], f["replication"], f["seed"])
                  for f in first.failures) == sorted(
        (ps.id, "disaggregated", 2, 7) for ps in plan.scenarios
    )  # fmt: skip
    assert all("injected fault" in f["error"] for f in first.failures)
    assert len(first.replications) == plan.rows - len(plan.scenarios)
    assert not first.complete
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["status"] == "incomplete" and len(manifest["failures"]) == 2
    # Comparisons still use every replication both architectures have.
    c = first.comparisons[first.comparisons["metric"] == "ttft_mean_s"]
    assert len(c) == 2

    monkeypatch.undo()
    second = run_study(spec, out_dir=tmp_path, progress=False)
    assert second.rows_simulated == len(plan.scenarios) and second.complete
    assert not second.failures
    pd.testing.assert_frame_equal(frame(second.replications), frame(reference), check_exact=True)


@pytest.mark.slow
def test_a_dead_worker_is_retried_by_ray(cluster, tmp_path, monkeypatch):
    """On two nodes the tasks write their own part files. The first task's worker dies right
    after writing its parts, before returning: Ray retries the task, whose parts get new
    (attempt-unique) names; only the retry's are committed, so every row counts once. The next
    run finds the dead attempt's parts, checks and commits them: still once."""
    import distsim.runner.execute as execute

    marker = str(tmp_path / "died-once")

    def dies_once(scenarios, units, *rest, **kwargs):  # runs on the workers (by value)
        import os
        import pathlib

        from distsim.runner.task import run_batch

        result = run_batch(scenarios, units, *rest, **kwargs)
        if not pathlib.Path(marker).exists():
            pathlib.Path(marker).write_text(str(len(result.parts)))
            os._exit(1)  # the worker process dies after writing, before returning
        return result

    spec = tiny(replications=4)
    monkeypatch.setattr(execute, "run_batch", dies_once)
    out = tmp_path / "out"
    result = run_study(spec, out_dir=out, progress=False)
    assert int(Path(marker).read_text()) > 0  # the dead attempt had written parts
    assert result.complete and not result.failures
    assert not result.replications.duplicated(KEY).any()
    monkeypatch.undo()
    clean = run_study(spec, out_dir=tmp_path / "clean", progress=False)
    pd.testing.assert_frame_equal(
        frame(result.replications), frame(clean.replications), check_exact=True
    )
    again = run_study(spec, out_dir=out, progress=False)  # adopts the dead attempt's parts
    assert again.rows_simulated == 0
    stored_rows, _, _ = read_rows(out)
    assert len(stored_rows) == len(clean.replications) and not stored_rows.duplicated(KEY).any()
    pd.testing.assert_frame_equal(
        frame(again.replications), frame(clean.replications), check_exact=True
    )


# ---------------------------------------------------------------- reuse of stored rows


def outside_plan(out: Path, plan) -> pd.DataFrame:
    """The stored rows outside `plan` (kept, not used in its summary)."""
    rows, _, _ = read_rows(out, plan.id_aliases)
    return rows[~in_plan(rows, plan)]


@pytest.mark.slow
def test_more_replications_reuse_rows_and_changed_scenarios_do_not(cluster, tmp_path):
    out = tmp_path / "out"
    r4 = run_study(tiny(replications=4), out_dir=out, progress=False)
    assert (r4.rows_reused, r4.rows_simulated) == (0, 16)
    # Study-level changes (more replications, a new name) keep every stored row.
    r6 = run_study(tiny(replications=6, name="renamed"), out_dir=out, progress=False)
    assert (r6.rows_reused, r6.rows_simulated) == (16, 8)
    old = frame(r4.replications)
    new = frame(r6.replications[r6.replications["replication"] < 4])
    pd.testing.assert_frame_equal(new, old, check_exact=True)
    # Changing one scenario's rate: its rows are stale, the other scenario's are reused.
    r_changed = run_study(tiny(replications=6, rates=(5.0, 9.0)), out_dir=out, progress=False)
    assert (r_changed.rows_reused, r_changed.rows_simulated) == (12, 12)
    final = stored(out)
    assert sorted(final[RATE].unique()) == [5.0, 9.0]
    assert set(final["scenario_id"]) == {ps.id for ps in r_changed.plan.scenarios}
    # The rate-7 rows are kept (not deleted), outside this summary.
    assert any("12 stored row(s)" in n and "kept, not used in this summary" in n
               for n in r_changed.notes)  # fmt: skip
    assert len(outside_plan(out, r_changed.plan)) == 12
    # Nothing left to do: no Ray at all.
    again = run_study(tiny(replications=6, rates=(5.0, 9.0)), out_dir=out, progress=False)
    assert (again.rows_reused, again.rows_simulated, again.tasks) == (24, 0, 0)
    # The old rate comes back: its rows are reused, nothing is simulated.
    back = run_study(tiny(replications=6), out_dir=out, progress=False)
    assert (back.rows_reused, back.rows_simulated, back.tasks) == (24, 0, 0)
    pd.testing.assert_frame_equal(
        frame(back.replications), frame(r6.replications), check_exact=True
    )


@pytest.mark.slow
def test_shrinking_then_restoring_replications_simulates_nothing(cluster, tmp_path):
    out = tmp_path / "out"
    full = run_study(tiny(replications=5), out_dir=out, progress=False)
    fewer = run_study(tiny(replications=2), out_dir=out, progress=False)
    assert (fewer.rows_reused, fewer.rows_simulated) == (8, 0)
    assert len(fewer.replications) == 8 and len(stored(out)) == 8  # the summary uses its plan
    assert int(fewer.summary[fewer.summary["metric"] == "ttft_mean_s"]["n"].max()) == 2
    assert any("12 stored row(s)" in n and "kept" in n for n in fewer.notes)
    restored = run_study(tiny(replications=5), out_dir=out, progress=False)
    assert (restored.rows_reused, restored.rows_simulated, restored.tasks) == (20, 0, 0)
    pd.testing.assert_frame_equal(
        frame(restored.replications), frame(full.replications), check_exact=True
    )
    assert outside_plan(out, restored.plan).empty  # every kept row is back in the plan


@pytest.mark.slow
def test_no_export_writes_no_second_copy_and_a_later_run_writes_it(cluster, tmp_path):
    """`export=False` (`distsim run --no-export`): no replications.parquet, the same summary;
    a later run without it writes the file, simulating nothing; a stale copy is removed."""
    ref, out = tmp_path / "ref", tmp_path / "out"
    run_study(tiny(replications=3), out_dir=ref, progress=False)
    run_study(tiny(replications=3), out_dir=out, progress=False, export=False)
    assert not (out / "replications.parquet").exists()
    for name in ("summary.csv", "comparisons.csv"):
        assert (out / name).read_text() == (ref / name).read_text()
    again = run_study(tiny(replications=3), out_dir=out, progress=False)
    assert (again.rows_reused, again.rows_simulated) == (12, 0)
    pd.testing.assert_frame_equal(stored(out), stored(ref), check_exact=True)
    more = run_study(tiny(replications=4), out_dir=out, progress=False, export=False)
    assert more.rows_simulated == 4 and not (out / "replications.parquet").exists()
    assert any("replications.parquet was removed" in n for n in more.notes)


@pytest.mark.slow
def test_an_override_into_a_shared_folder_keeps_the_other_rows(cluster, tmp_path):
    out = tmp_path / "shared"
    base = run_study(tiny(replications=3), out_dir=out, progress=False)
    other = run_study(tiny(replications=3), out_dir=out, progress=False,
                      overrides={"duration_s": 20.0})  # fmt: skip
    assert (other.rows_reused, other.rows_simulated) == (0, 12)
    # Each summary uses exactly its plan's rows; the folder keeps both.
    assert set(other.replications["scenario_id"]) == {ps.id for ps in other.plan.scenarios}
    assert set(other.summary["scenario_id"]) <= {ps.id for ps in other.plan.scenarios}
    kept = outside_plan(out, other.plan)
    assert set(kept["scenario_id"]) == {ps.id for ps in base.plan.scenarios} and len(kept) == 12
    again = run_study(tiny(replications=3), out_dir=out, progress=False)
    assert (again.rows_reused, again.rows_simulated) == (12, 0)


# ---------------------------------------------------------------- store (no Ray)


def _rows(sid: str, reps: range, value: float = 1.0) -> list[dict]:
    return [
        {"scenario_id": sid, "architecture": a, "replication": r, "seed": 7,
         "n_requests": 10, "ttft_mean_s": value + r}
        for r in reps for a in ("monolithic", "disaggregated")
    ]  # fmt: skip


def test_store_parts_consolidate_dedupe_and_keep_other_plans(tmp_path):
    plan = plan_study(validate_study(tiny(replications=3, rates=(5.0,))))
    sid = plan.scenarios[0].id
    with ResultStore.open(tmp_path) as store:
        store.append(_rows(sid, range(2)))
        store.append(_rows(sid, range(1, 3)))  # replication 1 twice (a kill before cleanup)
        store.append(_rows("other00000", range(3)))
        store.append(_rows(sid, range(3, 5)))  # beyond this plan's replications
        assert store.part_count() == 4
        store.consolidate(plan)
        published = store.plan_rows(plan)
    assert len(published) == 6 and not published.duplicated(KEY).any()
    assert list(published.columns[:5]) == ["scenario_id", RATE, "architecture",
                                           "replication", "seed"]  # fmt: skip
    assert (published[RATE] == 5.0).all()
    exported = pd.read_parquet(tmp_path / "replications.parquet")
    pd.testing.assert_frame_equal(exported, published, check_exact=True)
    # Parts holding the same row (replication 1 twice) are merged into one: one part per
    # scenario here, each row stored once.
    parts = sorted((tmp_path / "rows").glob("scenario_id=*/part-*.parquet"))
    assert [p.parent.name for p in parts] == [
        f"scenario_id={s}" for s in sorted([sid, "other00000"])
    ]
    assert sum(pq.read_metadata(p).num_rows for p in parts) == 16
    # Rows outside the plan are kept, never dropped.
    back, notes, _ = read_rows(tmp_path)
    assert RATE not in back.columns and not notes and len(back) == 16
    outside = back[(back["scenario_id"] != sid) | (back["replication"] >= 3)]
    assert len(outside) == 10 and set(outside["scenario_id"]) == {sid, "other00000"}
    meta = pq.read_schema(tmp_path / "replications.parquet").metadata
    assert json.loads(meta[b"distsim.param_columns"]) == [RATE]
    # Only `prune` deletes them, and says which.
    with ResultStore.open(tmp_path) as store:
        assert len(store.prune(plan, dry_run=True)) == 10
        assert len(read_rows(tmp_path)[0]) == 16
        gone = store.prune(plan)
    assert len(gone) == 10 and not (tmp_path / "rows" / "scenario_id=other00000").exists()
    assert len(read_rows(tmp_path)[0]) == 6


def test_consolidation_merges_a_scenario_with_more_than_a_few_small_parts(tmp_path):
    plan = plan_study(validate_study(tiny(replications=6, rates=(5.0, 6.0))))
    many, few = (s.id for s in plan.scenarios)
    with ResultStore.open(tmp_path) as store:
        for r in range(MERGE_ABOVE_PARTS + 1):  # one part a replication: one too many
            store.append(_rows(many, range(r, r + 1), value=float(r)))
        store.append(_rows(few, range(3)))
        store.append(_rows(few, range(3, 6)))
        store.consolidate(plan)
        rows = store.plan_rows(plan)
    by_scenario = pd.Series([p.parent.name for p in part_files(tmp_path)]).value_counts()
    assert by_scenario.to_dict() == {f"scenario_id={many}": 1, f"scenario_id={few}": 2}
    assert len(rows) == 2 * (MERGE_ABOVE_PARTS + 1) + 2 * 6 and not rows.duplicated(KEY).any()
    merged = rows[rows["scenario_id"] == many].sort_values(["replication", "architecture"])
    assert merged["ttft_mean_s"].tolist() == [2.0 * r for r in range(5) for _ in range(2)]


def test_cli_prune_lists_and_deletes_only_rows_outside_the_plan(tmp_path):
    from typer.testing import CliRunner

    from distsim.cli import app

    study = validate_study(tiny(replications=2, rates=(5.0,)))
    plan = plan_study(study)
    sid = plan.scenarios[0].id
    with ResultStore.open(tmp_path) as store:
        store.write_spec(study.model_dump(mode="json"))
        store.append(_rows(sid, range(4)) + _rows("other00000", range(1)))
        store.consolidate(plan)
    runner = CliRunner()
    dry = runner.invoke(app, ["prune", str(tmp_path), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would delete 6 stored row(s)" in dry.output
    assert f"{sid}: 4 row(s), disaggregated, monolithic, replications 2-3" in dry.output
    assert "other00000: 2 row(s)" in dry.output
    assert len(read_rows(tmp_path)[0]) == 10
    done = runner.invoke(app, ["prune", str(tmp_path)])
    assert done.exit_code == 0 and "deleted 6 stored row(s)" in done.output
    assert len(read_rows(tmp_path)[0]) == 4
    again = runner.invoke(app, ["prune", str(tmp_path)])
    assert "nothing to delete" in again.output
    missing = runner.invoke(app, ["prune", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such results folder" in missing.output


def test_store_lock_corrupt_part_and_fresh(tmp_path):
    with ResultStore.open(tmp_path) as store:
        with pytest.raises(StoreError, match="another distsim run"):
            ResultStore.open(tmp_path)
        store.append(_rows("s", range(1)))
    (committed,) = (tmp_path / "rows" / "scenario_id=s").glob("part-*.parquet")
    # A part no commit names (a run killed between the two) is not read ...
    orphan = committed.with_name("part-zz-000001.parquet")
    orphan.write_bytes(b"not parquet")
    rows, notes, read = read_rows(tmp_path)
    assert len(rows) == 2 and not notes and read == [committed]
    # ... a damaged committed part stops a read-only command with the recovery ...
    good = committed.read_bytes()
    committed.write_bytes(good[:-40])
    with pytest.raises(StoreError, match="part-.*: unreadable.*run the study again"):
        read_rows(tmp_path)
    # ... and a run sets both aside (kept, noted) and goes on without them.
    with ResultStore.open(tmp_path):
        pass
    rows, notes, _ = read_rows(tmp_path)
    assert len(rows) == 0 and "2 damaged file(s) were set aside" in notes[0]
    (tmp_path / "mine.txt").write_text("user file")
    with ResultStore.open(tmp_path, fresh=True):
        pass
    assert not (tmp_path / "rows").exists()
    assert (tmp_path / "mine.txt").exists()  # --fresh deletes only distsim's files


def test_bad_input_writes_nothing(tmp_path):
    from distsim.errors import SpecError

    out = tmp_path / "never"
    with pytest.raises(SpecError):
        run_study(tiny(sweep={RATE: [-1.0]}), out_dir=out, progress=False)
    with pytest.raises(SpecError):
        run_study(tiny(), out_dir=out, replications=1, progress=False)
    assert not out.exists()


# ---------------------------------------------------------------- aggregation vs scipy


@pytest.mark.slow
def test_summary_and_comparisons_match_an_independent_computation(reference):
    from scipy import stats as sps

    from distsim.runner.study import aggregate_rows

    plan = plan_study(validate_study(tiny()))
    summary, comparisons, _ = aggregate_rows(reference, plan)
    ps = plan.scenarios[0]  # stable (rate 7 overloads the 2 decode GPUs: not tested)
    cell = reference[(reference["scenario_id"] == ps.id)]
    metric = "ttft_mean_s"  # a mean: t over replications on the log scale, paired log ratio
    mono = cell[cell["architecture"] == "monolithic"].sort_values("replication")[metric]
    dis = cell[cell["architecture"] == "disaggregated"].sort_values("replication")[metric]
    m, d, n = mono.to_numpy(), dis.to_numpy(), len(mono)
    tq = sps.t.ppf(0.975, n - 1)
    h = tq * np.std(m / m.mean(), ddof=1) / np.sqrt(n)  # se of log(mean) by the delta method
    row = summary[(summary["scenario_id"] == ps.id) & (summary["architecture"] == "monolithic")
                  & (summary["metric"] == metric)].iloc[0]  # fmt: skip
    assert (row["estimate"], row["ci_low"], row["ci_high"], row["n"]) == (
        pytest.approx(m.mean()), pytest.approx(m.mean() * np.exp(-h)),
        pytest.approx(m.mean() * np.exp(h)), 24,
    )  # fmt: skip
    # the paired test: t on log(mean d / mean m), se from d_r / mean d - m_r / mean m
    lr = np.log(d.mean() / m.mean())
    se = np.std(d / d.mean() - m / m.mean(), ddof=1) / np.sqrt(n)
    p = 2 * sps.t.sf(abs(lr / se), n - 1)
    c = comparisons[(comparisons["scenario_id"] == ps.id)
                    & (comparisons["metric"] == metric)].iloc[0]  # fmt: skip
    assert c["p_value"] == pytest.approx(p, rel=1e-9)
    assert c["diff"] == pytest.approx(d.mean() - m.mean())
    assert c["rel_diff"] == pytest.approx(d.mean() / m.mean() - 1)
    assert c["rel_ci_low"] == pytest.approx(np.expm1(lr - tq * se))
    # the absolute interval inverts the same test: at each end, the log-ratio t of (dis - end)
    # against mono is -+t(0.975)
    for end, sign in ((c["diff_ci_low"], 1), (c["diff_ci_high"], -1)):
        x = d.mean() - end
        z = (d - end) / x - m / m.mean()
        t_end = np.log(x / m.mean()) / (np.std(z, ddof=1) / np.sqrt(n))
        assert t_end == pytest.approx(sign * tq, rel=1e-6)
    assert bool(c["significant"]) == (c["p_adjusted"] < 0.05)
    # Identical metrics (n_requests under common random numbers) are "no difference".
    n = comparisons[comparisons["metric"] == "n_requests"]
    assert (n["diff"] == 0).all() and (n["p_value"] == 1).all() and not n["significant"].any()
    assert not comparisons[["diff", "diff_ci_low", "diff_ci_high", "p_value"]].isna().any().any()


# ---------------------------------------------------------------- cluster.yaml


def _validate_cluster_config(config: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_passes_rays_validation():
    text = (ROOT / "cluster.yaml").read_text(encoding="utf-8")
    config = yaml.safe_load(text)
    assert config["provider"]["type"] == "local"
    assert "available_node_types" not in config  # the local provider rejects it
    prepared = _validate_cluster_config(config)
    assert prepared["max_workers"] == len(config["provider"]["worker_ips"])
    assert any("pip install -e ~/distsim" in c for c in config["setup_commands"])
    assert all("RAY_AUTH_MODE=token" in " ".join(config[k])
               for k in ("head_start_ray_commands", "worker_start_ray_commands"))  # fmt: skip

    # The commented cloud variant (lines "# ..." after the marker) validates too.
    lines = text.split("## Cloud variant", 1)[1].splitlines()
    cloud = yaml.safe_load("\n".join(ln[2:] for ln in lines if ln.startswith("# ")))
    variant = {k: v for k, v in config.items() if k not in ("provider", "auth")} | cloud
    assert set(_validate_cluster_config(variant)["available_node_types"]) == {"head", "worker"}


def test_cluster_validation_can_fail():
    import jsonschema

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text(encoding="utf-8"))
    config["setup_comands"] = ["typo"]
    with pytest.raises(jsonschema.ValidationError):
        _validate_cluster_config(config)


@pytest.mark.slow
def test_rows_never_carry_per_request_arrays(reference):
    """Metrics are numbers; anything else a task returns is bounded text (e.g. a sketch)."""
    for column in reference.columns[5:]:
        values = reference[column]
        if pd.api.types.is_numeric_dtype(values):
            continue
        assert all(isinstance(v, str) for v in values), column


def test_the_payload_is_bounded_whatever_the_request_count():
    """A row's text payload (sketches, time profile) does not grow with the requests simulated:
    a log-histogram holds one count per occupied bucket (their number grows with the log of the
    latency range, the counts' digits with the log of n), a time profile a fixed number of bins.
    A replication 100x longer (100x the requests) must give texts less than 10x as long;
    per-request arrays would be ~100x."""
    from distsim_testkit import make_scenario

    from distsim.runner.payload import PAYLOAD_COLUMNS
    from distsim.runner.task import Unit, run_unit

    def row(duration_s: float) -> dict[str, Any]:
        sc = make_scenario(duration_s=duration_s, warmup_s=5.0)
        [r, *_] = run_unit(sc, Unit("x", 0, ("monolithic",))).rows
        return r

    short, long = row(1200.0), row(120_000.0)
    assert long["n_requests"] > 90 * short["n_requests"] > 0
    for column in PAYLOAD_COLUMNS:
        assert len(long[column]) < 10 * len(short[column]), column


# ---------------------------------------------------------------- data files travel with the study


@pytest.mark.slow
def test_data_files_are_shipped_through_the_object_store(cluster, tmp_path):
    """The driver parses each data file once and ships it; the tasks (on both nodes) never read
    the path: the file is deleted before they run, and their rows equal those computed from
    the file."""
    import ray
    from test_data_travels import trace_study, write_trace

    from distsim.runner import execute
    from distsim.runner.task import Unit, run_batch

    path = write_trace(tmp_path / "data" / "trace.csv")
    plan = plan_study(validate_study(trace_study(path, replications=4)))
    scenarios = {ps.id: ps.scenario for ps in plan.scenarios}
    units = [Unit(ps.id, r, plan.architectures) for ps in plan.scenarios for r in range(4)]
    expected = pd.DataFrame(run_batch(scenarios, units).rows)
    session = execute.RaySession(notes=[])
    with session:
        data = session._ship_data(scenarios)
        path.unlink()  # from here on, no process can read the file
        remote = ray.remote(num_cpus=1, max_retries=0)(run_batch)
        refs = [remote.remote(scenarios, [u], data) for u in units]
        rows = [row for ref in refs for row in ray.get(ref).rows]
        # Without the shipped data a task must read the path, and fails.
        missing = ray.get(remote.remote(scenarios, units[:1])).errors
    assert missing and "trace.csv" in missing[0]["error"]
    pd.testing.assert_frame_equal(frame(pd.DataFrame(rows)), frame(expected), check_exact=True)
