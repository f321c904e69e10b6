"""Storage faults: a read-only output folder, a disk that fills mid-study, damaged row files
from an earlier crash, flipped bits, and a crash at every step of a write. Each ends in a one-line
error (exit 2) or the documented recovery that keeps every intact row; never a traceback, never
a silently lost or changed row.

Real file systems where the test may mount them (root: a small tmpfs that fills, a read-only
tmpfs and a read-only bind mount; skipped cleanly where mounting is not permitted), and a
fault-injecting writer that runs everywhere. Runs go through `distsim run` (Typer's CliRunner,
in process) on one local loopback Ray session for the module.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from distsim_testkit import (
    RATE,
    flip_in_column,
    frame,
    invoke,
    one_line_error,
    part_files,
    tiny_study,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import distsim.runner.rowfiles as store_mod  # where stored files are opened
from distsim.errors import StoreError
from distsim.runner.plan import plan_study
from distsim.runner.store import (
    KEY,
    DamagedPartError,
    ResultStore,
    atomic_write_bytes,
    read_rows,
)
from distsim.spec.study import validate_study

pytestmark = pytest.mark.slow  # fault tests: real kills, clusters and file systems


def tiny(replications: int = 8) -> dict:
    return tiny_study("storage", replications)


def no_temp_files(out: Path) -> bool:
    return not [p for p in out.rglob(".*") if ".tmp-" in p.name]


def every_file_intact(out: Path) -> None:
    """Every parquet file parses with checksums, every JSON/YAML file parses."""
    for p in out.rglob("*.parquet"):
        pq.read_table(p, page_checksum_verification=True)
    for p in out.glob("*.json"):
        json.loads(p.read_text(encoding="utf-8"))
    if (out / "spec.yaml").exists():
        yaml.safe_load((out / "spec.yaml").read_text(encoding="utf-8"))


# ---------------------------------------------------------------- mounts (root only)


def _mount(*args: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    proc = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    return proc.returncode == 0


@contextlib.contextmanager
def mounted(target: Path, *args: str) -> Iterator[Path]:
    """`mount ARGS target` for the block, or skip the test where mounting is not permitted."""
    target.mkdir(parents=True, exist_ok=True)
    if not _mount(*args, str(target)):
        pytest.skip("cannot mount a file system here (needs root and CAP_SYS_ADMIN)")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "storage.yaml"
    path.write_text(yaml.safe_dump(tiny(), sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reference(ray_session, spec, tmp_path_factory) -> Path:
    """An undisturbed run's folder."""
    out = tmp_path_factory.mktemp("ref") / "out"
    result = invoke("run", spec, "--out", out, "--quiet")
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def reference_rows(reference) -> pd.DataFrame:
    return frame(pd.read_parquet(reference / "replications.parquet"))


def stored_rows(out: Path) -> pd.DataFrame:
    return frame(pd.read_parquet(out / "replications.parquet"))


# ---------------------------------------------------------------- read-only output folder


def test_read_only_output_folder_is_a_one_line_error(ray_session, spec, reference, tmp_path):
    # A new --out inside a read-only file system: nothing can be created.
    with mounted(tmp_path / "ro", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs") as ro:
        line = one_line_error(invoke("run", spec, "--out", ro / "new", "--quiet"))
        assert "read-only file system" in line.lower()
    # An existing results folder seen read-only (a read-only bind mount): resuming cannot write,
    # `report` still prints the tables and then says it cannot write; the rows are untouched.
    src = tmp_path / "results"
    shutil.copytree(reference, src)
    view = tmp_path / "view"
    with mounted(view, "--bind", str(src)):
        if not _mount("-o", "remount,ro,bind", str(view)):
            pytest.skip("cannot remount read-only here")
        line = one_line_error(invoke("run", spec, "--out", view, "--quiet"))
        assert "read-only" in line.lower() or "cannot" in line
        report = invoke("report", view)
        line = one_line_error(report)
        assert "cannot write the report" in line
        assert "disaggregated" in report.stdout  # the tables were printed first
    pd.testing.assert_frame_equal(stored_rows(src), stored_rows(reference), check_exact=True)


def test_read_only_folder_without_mounts_via_permissions_or_injected_erofs(
    spec, tmp_path, monkeypatch
):
    """The same without root: EROFS injected into every write (chmod does not stop root)."""
    real_open = open

    def ro_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(m in mode for m in "wax+"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(file))
        return real_open(file, mode, *args, **kwargs)

    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(store_mod, "open", ro_open, raising=False)
    line = one_line_error(invoke("run", spec, "--out", out, "--quiet"))
    assert "read-only file system: choose another --out" in line
    assert not (out / "spec.yaml").exists() and no_temp_files(out)


# ---------------------------------------------------------------- a disk that fills


def test_a_disk_that_fills_mid_study_loses_no_row_and_resumes(
    ray_session, spec, reference_rows, tmp_path
):
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=160k", "tmpfs") as disk:
        out = disk / "out"
        result = invoke("run", spec, "--out", out, "--quiet")
        line = one_line_error(result)
        assert "no space left on the device" in line and "run the same command again" in line
        assert no_temp_files(out)
        every_file_intact(out)  # what was written before the disk filled is whole
        saved, notes, _ = read_rows(out)
        assert not notes
        assert 0 < len(saved) < len(reference_rows)
        # Free space; the same command resumes and keeps every saved row.
        assert _mount("-o", "remount,size=16m", str(disk))
        again = invoke("run", spec, "--out", out, "--quiet")
        assert again.exit_code == 0, again.stderr
        manifest = json.loads((out / "manifest.json").read_text())
        # A part written whole whose commit then found the disk full is checked and committed
        # by this run: it may reuse more rows than were committed, never fewer.
        assert manifest["rows_reused"] >= len(saved)
        assert manifest["rows_simulated"] == len(reference_rows) - manifest["rows_reused"]
        final = stored_rows(out)
        assert not final.duplicated(KEY).any()
        pd.testing.assert_frame_equal(final, reference_rows, check_exact=True)
        every_file_intact(out)
        assert no_temp_files(out) and not (out / "parts").exists()


def test_two_runs_in_one_second_never_replace_each_others_parts(reference_rows, tmp_path):
    """Found by the disk-full test: part names were (time to the second, pid, counter), so a
    second run in the same process within the same second renamed its first part over the
    first run's and lost its rows without a word."""
    rows = reference_rows.drop(columns=[RATE]).to_dict("records")
    for batch in (rows[:4], rows[4:8]):
        with ResultStore.open(tmp_path) as store:
            store.append(batch)
    saved, _, _ = read_rows(tmp_path)
    assert len(saved) == 8


class _FillingDisk:
    """A fault-injecting `open` for distsim.runner.rowfiles: writes fail with ENOSPC once `budget_bytes`
    have been written in all, like a disk that fills (runs without root)."""

    def __init__(self, budget_bytes: int) -> None:
        self.left = budget_bytes
        self.real_open = open

    def __call__(self, file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = self.real_open(file, mode, *args, **kwargs)
        if "w" not in mode:
            return f
        disk = self
        real_write = f.write

        class _File:
            def write(self, data: bytes) -> int:
                if len(data) > disk.left:
                    real_write(data[: max(disk.left, 0)])  # a partial write, then the error
                    disk.left = 0
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                disk.left -= len(data)
                return real_write(data)

            def __getattr__(self, name: str) -> Any:
                return getattr(f, name)

            def __enter__(self) -> _File:
                return self

            def __exit__(self, *exc: object) -> None:
                f.close()

        return _File()


def test_injected_full_disk_keeps_every_part_written_before(reference_rows, tmp_path, monkeypatch):
    plan = plan_study(validate_study(tiny()))
    rows = reference_rows.drop(columns=[RATE]).to_dict("records")
    batches = [rows[i : i + 4] for i in range(0, len(rows), 4)]
    monkeypatch.setattr(store_mod, "open", _FillingDisk(60_000), raising=False)
    written = 0
    with ResultStore.open(tmp_path) as store:
        with pytest.raises(StoreError, match="no space left on the device") as info:
            for batch in batches:
                store.append(batch)
                written += len(batch)
        assert "\n" not in str(info.value)
        assert 0 < written < len(rows)
        assert no_temp_files(tmp_path)
        monkeypatch.undo()  # space freed
        saved, notes, _ = read_rows(tmp_path)
        assert len(saved) == written and not notes
        for batch in batches[written // 4 :]:
            store.append(batch)
        store.consolidate(plan)
        published = store.plan_rows(plan)
    pd.testing.assert_frame_equal(frame(published), reference_rows, check_exact=True)


# ---------------------------------------------------------------- a crash at every step of a write


@pytest.mark.parametrize("step", ["open", "write", "fsync", "replace"])
def test_a_crash_at_any_step_of_a_write_leaves_the_old_file(tmp_path, monkeypatch, step):
    target = tmp_path / "replications.parquet"
    target.write_bytes(b"old contents")

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    if step == "open":
        monkeypatch.setattr(store_mod, "open", boom, raising=False)
    elif step == "write":
        monkeypatch.setattr(store_mod, "open", _FillingDisk(3), raising=False)
    else:
        monkeypatch.setattr(store_mod.os, step, boom)
    with pytest.raises(StoreError, match="cannot write"):
        atomic_write_bytes(target, b"new contents, longer than the old")
    monkeypatch.undo()
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["replications.parquet"]


# ---------------------------------------------------------------- damaged files from a crash


def _crashed_folder(reference: Path, dest: Path, reference_rows: pd.DataFrame) -> int:
    """A copy of the reference folder as an earlier crash (or bad disk) could leave it: one
    committed part truncated, two intact parts no commit names (written by a run killed before
    committing them), a damaged uncommitted part and a stale temporary file. Returns the number
    of intact rows a run can reuse."""
    shutil.copytree(reference, dest)
    rows = reference_rows.drop(columns=[RATE])
    parts = part_files(dest)
    assert len(parts) == rows["scenario_id"].nunique()  # one part per scenario (consolidated)
    damaged_sid = parts[0].parent.name.split("=", 1)[1]
    parts[0].write_bytes(parts[0].read_bytes()[: parts[0].stat().st_size // 2])
    # Parts of the damaged scenario's replications < 3 as a killed run leaves them: written, with
    # no commit naming them (written by another store into a scratch folder, then copied).
    lost = rows[(rows["scenario_id"] == damaged_sid) & (rows["replication"] < 3)]
    scratch = dest.with_name(dest.name + "-scratch")
    with ResultStore.open(scratch) as store:
        half = len(lost) // 2
        store.append(lost.iloc[:half].to_dict("records"))
        store.append(lost.iloc[half:].to_dict("records"))
    orphans = part_files(scratch)
    for p in orphans:
        shutil.copy(p, parts[0].parent / p.name)
    bad = parts[0].parent / "part-zz-000009.parquet"
    bad.write_bytes(orphans[0].read_bytes()[:-100])
    (parts[0].parent / ".part-zz-000010.parquet.tmp-999").write_bytes(b"half a write")
    return len(rows) - int((rows["scenario_id"] == damaged_sid).sum()) + len(lost)


def test_damaged_files_are_reported_then_recovered_keeping_every_intact_row(
    ray_session, spec, reference, reference_rows, tmp_path
):
    out = tmp_path / "crashed"
    intact = _crashed_folder(reference, out, reference_rows)
    # Read-only commands stop with one line that names the file and the recovery.
    line = one_line_error(invoke("report", out))
    assert ".parquet: unreadable" in line and "run the study again" in line
    # The run recovers: damaged files set aside (kept), intact rows reused (the uncommitted
    # parts' too, once checked), the rest simulated.
    result = invoke("run", spec, "--out", out, "--quiet")
    assert result.exit_code == 0, result.stderr
    assert "damaged file(s) were set aside" in result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows_reused"] == intact
    assert manifest["rows_simulated"] == len(reference_rows) - intact
    pd.testing.assert_frame_equal(stored_rows(out), reference_rows, check_exact=True)
    aside = sorted(p.name for p in out.rglob("*.corrupt-*"))
    assert len(aside) == 2 and aside[1].startswith("part-zz-000009.parquet.corrupt-")
    assert no_temp_files(out)
    every_file_intact(out)
    # Every later read still says so, until --fresh deletes them.
    assert any("set aside" in n for n in read_rows(out)[1])
    fresh = invoke("run", spec, "--out", out, "--quiet", "--fresh")
    assert fresh.exit_code == 0 and not list(out.rglob("*.corrupt-*"))


@pytest.mark.parametrize("column", ["ttft_sketch", "replication"])
def test_a_flipped_bit_a_run_finds_when_reading_is_set_aside_and_simulated_again(
    ray_session, spec, reference, reference_rows, tmp_path, column
):
    """Opening does not verify checksums; the run finds the damage when it reads the part (the
    key columns when it plans, the others when it exports) and repairs it in the same run:
    the part set aside, its rows simulated again, every other row reused."""
    out = tmp_path / "flipped"
    shutil.copytree(reference, out)
    part = part_files(out)[1]
    sid = part.parent.name.split("=", 1)[1]
    flip_in_column(part, column)
    lost = int((reference_rows["scenario_id"] == sid).sum())
    result = invoke("run", spec, "--out", out, "--quiet")
    assert result.exit_code == 0, result.stderr
    assert "unreadable, damaged" in result.stderr and "simulated again" in result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows_simulated"] == lost
    assert manifest["rows_reused"] == len(reference_rows) - lost
    pd.testing.assert_frame_equal(stored_rows(out), reference_rows, check_exact=True)
    assert len(list(out.rglob("*.corrupt-*"))) == 1 and not part.exists()
    every_file_intact(out)
    again = invoke("run", spec, "--out", out, "--quiet")
    assert again.exit_code == 0
    assert json.loads((out / "manifest.json").read_text())["rows_simulated"] == 0


def test_unreadable_but_intact_files_are_an_error_not_set_aside(reference, tmp_path, monkeypatch):
    """A permission or I/O error is not damage: one line, nothing renamed."""
    out = tmp_path / "eio"
    shutil.copytree(reference, out)
    real_open = open

    def eio_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "/part-" in str(file) and "r" in mode:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(store_mod, "open", eio_open, raising=False)
    plan = plan_study(validate_study(tiny()))
    with ResultStore.open(out) as store:  # opening reads no committed part: reading them does
        with pytest.raises(StoreError, match="cannot read: Input/output error") as info:
            store.consolidate(plan)
        assert not isinstance(info.value, DamagedPartError) and store.damaged == []
    names = [[p.relative_to(d) for p in part_files(d)] for d in (out, reference)]
    assert names[0] == names[1] and not list(out.rglob("*.corrupt-*"))


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(data=st.data())
def test_a_flipped_bit_is_an_error_never_a_changed_number(reference, tmp_path_factory, data):
    """Page checksums: any single flipped bit of a stored part makes reading fail with one
    line, or (in bytes nobody reads) changes nothing; it never changes a stored value."""
    target = part_files(reference)[0]
    original = target.read_bytes()
    pos = data.draw(st.integers(0, len(original) - 1), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    damaged = bytearray(original)
    damaged[pos] ^= 1 << bit
    out = tmp_path_factory.mktemp("flip")
    shutil.copytree(reference / "rows", out / "rows")
    (out / target.relative_to(reference)).write_bytes(bytes(damaged))
    try:
        rows, _, _ = read_rows(out)
    except StoreError as exc:
        assert "\n" not in str(exc) and "unreadable" in str(exc)
        return
    expected, _, _ = read_rows(reference)
    pd.testing.assert_frame_equal(rows, expected, check_exact=True)
