"""The earlier layout of a results folder, read as it is and moved into `rows/` on open.

Folders written before the part-file layout hold their rows in `replications.parquet` (the
store itself then, not an export), `kept.parquet` (rows outside the plan) and
`parts/part-*.parquet` (rows of an interrupted run). Readers take them as they are; the first
run that opens the folder moves them into `rows/` a Parquet batch at a time (`migrate`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from distsim.errors import StoreError
from distsim.runner import parts as P
from distsim.runner.location import Location
from distsim.runner.rowfiles import (
    PARTS_DIR,
    CorruptFileError,
    _frame,
    _recover_hint,
    _set_aside,
    iter_frames,
    read_table,
)

REPLICATIONS_FILE = "replications.parquet"
KEPT_FILE = "kept.parquet"  # the earlier layout's rows outside the plan (read, then migrated)
_EXPORT_META = b"distsim.export"  # schema metadata of replications.parquet as an export
# The earlier layout's consolidated row files, in the order they are read.
ROW_FILES = (REPLICATIONS_FILE, KEPT_FILE)


def _is_export(loc: Location, rel: str) -> bool:
    try:
        with loc.open_input(rel) as f:
            meta = pq.read_schema(f).metadata or {}
    except (OSError, pa.ArrowException):
        return False
    return _EXPORT_META in meta


def legacy_files(loc: Location) -> list[str]:
    """Row files of the earlier layout that are still the store: none once rows/ has a commit
    (a migrated folder, whose replications.parquet is then only the export)."""
    if P.CommitLog(loc).exists():
        return []
    out = [n for n in ROW_FILES if loc.is_file(n) and not _is_export(loc, n)]
    out += [n for n, _ in loc.listdir(PARTS_DIR) if _is_legacy_part(n)]
    return out


def _is_legacy_part(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.startswith("part-") and base.endswith(".parquet")


def _legacy_frames(loc: Location, ids: set[str] | None, notes: list[str]) -> list[pd.DataFrame]:
    """The earlier layout's rows (of `ids`, None: all). A damaged replications.parquet or
    kept.parquet is a `StoreError`; a damaged part file is skipped with a note."""
    frames = []
    for name in legacy_files(loc):
        try:
            table = read_table(loc, name)
        except CorruptFileError as exc:
            if name in ROW_FILES:
                raise _recover_hint(exc) from None
            notes.append(f"skipped {exc}")
            continue
        if ids is not None:
            keep = pa.compute.is_in(table.column("scenario_id"), value_set=pa.array(sorted(ids)))
            table = table.filter(keep)
        frames.append(_frame(table))
    return frames


def migrate(loc: Location, log: P.CommitLog) -> None:
    """Move the earlier layout's rows into rows/, a Parquet batch at a time (part names are
    fixed, so a migration killed half-way writes the same files again), commit them, check
    the counts, then delete the old files. A file found damaged part-way is set aside; the
    batches already moved are intact and are committed by `recover`."""
    names = legacy_files(loc)
    if not names:
        return
    entries: list[P.Entry] = []
    done: list[str] = []
    for name in names:
        stem = name.replace("/", "-").removesuffix(".parquet")
        written = 0
        try:
            for i, rows in enumerate(iter_frames(loc, name)):
                new = P.write_parts(loc, rows, f"legacy-{stem}-{i:05d}")
                written += sum(e["rows"] for e in new)
                entries += new
        except CorruptFileError:  # the batches moved so far are intact: kept (`recover`)
            _set_aside(loc, name)
            continue
        with loc.open_input(name) as f:
            total = pq.read_metadata(f).num_rows
        if written != total:
            raise StoreError(f"{loc.where(name)}: moved {written} of {total} rows")
        done.append(name)
    log.commit(add=entries)
    for name in done:
        loc.delete(name)
    with contextlib.suppress(StoreError, OSError):
        if loc.local and not loc.listdir(PARTS_DIR):
            Path(loc.path(PARTS_DIR)).rmdir()
