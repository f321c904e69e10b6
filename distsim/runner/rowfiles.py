"""Stored row files, one at a time: whole-or-nothing writes (whole, or in pieces), checksum-
verified reads, the setting aside of damaged files, a streaming Parquet writer (one table in
memory at a time), and the published row layout (`with_params`: rows with their plan's swept
parameters, as replications.parquet holds them).

The files and folders these functions work on are described in `store`; this module knows
nothing of commits.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from distsim.errors import StoreError, first_line
from distsim.runner import parts as P
from distsim.runner.location import Location, uri_of
from distsim.runner.plan import Plan

KEY = ["scenario_id", "architecture", "replication"]
CORE_COLUMNS = ["scenario_id", "architecture", "replication", "seed"]
PARTS_DIR = "parts"  # the earlier layout's unconsolidated rows
_PARAMS_META = b"distsim.param_columns"
_TMP_MARK = ".tmp-"
_CORRUPT_MARK = ".corrupt-"
# What a failed write means for the user, by errno.
_WRITE_HINTS = {
    errno.ENOSPC: "no space left on the device: free some and run the same command again "
    "(every row saved so far is kept)",
    errno.EDQUOT: "disk quota exceeded: free some and run the same command again "
    "(every row saved so far is kept)",
    errno.EROFS: "read-only file system: choose another --out",
    errno.EACCES: "permission denied: choose another --out",
    errno.EPERM: "permission denied: choose another --out",
}


def _fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename is durable only then); best effort."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` whole or not at all: a local file via a temporary file (below), an
    object-store URI (`location.uri_of`) as one single-object write."""
    _atomic_write(path, data)


def atomic_write_chunks(path: str | Path, chunks: Iterable[bytes]) -> None:
    """`atomic_write_bytes` for a file produced a piece at a time, never whole in memory
    (`Location.write_chunks`)."""
    _atomic_write(path, chunks)


def _atomic_write(path: str | Path, data: bytes | Iterable[bytes]) -> None:
    text = uri_of(path)
    if "://" in text and not text.startswith("file://"):
        parent, _, name = text.rpartition("/")
        where = Location.parse(parent)
        if isinstance(data, bytes):
            where.write_bytes(name, data)
        else:
            where.write_chunks(name, data)
        return
    _atomic_write_local(Path(text.removeprefix("file://")), data)


# Rows of a table turned into CSV text at a time (`csv_chunks`).
CSV_ROWS = 8192


def csv_chunks(frame: pd.DataFrame) -> Iterator[bytes]:
    """`frame.to_csv(index=False)` as bytes, `CSV_ROWS` rows at a time (the same text; a table
    of 10^5 cells is never whole in memory as text)."""
    yield frame.iloc[:CSV_ROWS].to_csv(index=False).encode("utf-8")
    for start in range(CSV_ROWS, len(frame), CSV_ROWS):
        part = frame.iloc[start : start + CSV_ROWS]
        yield part.to_csv(index=False, header=False).encode("utf-8")


def _atomic_write_local(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Write `data` (bytes, or pieces of bytes) to `path` via a temporary file in the same
    folder, fsync, rename, fsync the folder. On any failure the temporary file is removed, the
    old `path` (if any) is untouched, and a one-line `StoreError` says what to do."""
    tmp = path.with_name(f".{path.name}{_TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            for chunk in [data] if isinstance(data, bytes) else data:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        why = _WRITE_HINTS.get(exc.errno or -1) or exc.strerror or str(exc)
        raise StoreError(f"{path}: cannot write: {why}") from None
    except BaseException:  # Ctrl-C mid-write: no temporary file left behind
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


class CorruptFileError(StoreError):
    """A stored file exists and can be read, but is not a valid distsim row file."""


def _table_of(data: bytes, where: str) -> tuple[pa.Table, list[str]]:
    """A row file's table (checksums verified) and its parameter columns; `CorruptFileError`
    when it is not an intact row file (truncated, a checksum mismatch, missing columns)."""
    try:
        table = pq.read_table(pa.BufferReader(data), page_checksum_verification=True)
        meta = table.schema.metadata or {}
        params = json.loads(meta.get(_PARAMS_META, b"[]"))
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            raise ValueError("bad parameter-column metadata")
        missing = [c for c in CORE_COLUMNS if c not in table.column_names]
        if missing:
            raise ValueError(f"no column {missing[0]}")
        _ = table.schema.pandas_metadata  # parsed now: to_pandas later must not fail on it
    except (OSError, ValueError, TypeError, pa.ArrowException) as exc:
        raise CorruptFileError(f"{where}: unreadable, damaged ({first_line(exc)})") from None
    return table, params


def _read_bytes(loc: Location, rel: str) -> bytes:
    """A file's bytes; `StoreError` when it cannot be read (permissions, I/O). Local files are
    read with `open` (so tests can inject I/O errors), others through the filesystem."""
    if loc.local:
        try:
            with open(loc.path(rel), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise StoreError(f"{loc.where(rel)}: cannot read: {exc.strerror or exc}") from None
    return loc.read_bytes(rel)


def read_table(loc: Location, rel: str, columns: Sequence[str] | None = None) -> pa.Table:
    """A stored row file's core columns and metrics (parameter columns dropped); with
    `columns`, only those that exist (only their column chunks are read and verified)."""
    if columns is None:
        table, params = _table_of(_read_bytes(loc, rel), loc.where(rel))
        return table.drop_columns([c for c in params if c in table.column_names])
    try:
        with loc.open_input(rel) as f:
            names = pq.read_schema(f).names
            f.seek(0)
            table = pq.read_table(f, columns=[c for c in names if c in columns],
                                  page_checksum_verification=True)  # fmt: skip
        missing = [c for c in CORE_COLUMNS if c in columns and c not in table.column_names]
        if missing:
            raise ValueError(f"no column {missing[0]}")
    except FileNotFoundError:
        raise
    except (OSError, ValueError, TypeError, pa.ArrowException) as exc:
        if not loc.exists(rel):
            raise FileNotFoundError(loc.where(rel)) from None
        raise CorruptFileError(
            f"{loc.where(rel)}: unreadable, damaged ({first_line(exc)})"
        ) from None
    return table


def iter_frames(loc: Location, rel: str, batch_rows: int = 2048) -> Iterator[pd.DataFrame]:
    """A stored row file a batch of rows at a time (parameter columns dropped, checksums
    verified): memory is one batch, whatever the file's size. `CorruptFileError` when the file
    is not an intact row file (possibly after some batches were yielded)."""
    where = loc.where(rel)
    try:
        f = loc.open_input(rel)
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"{where}: cannot read: {first_line(exc)}") from None
    with f:
        try:
            pf = pq.ParquetFile(f, page_checksum_verification=True)
            meta = pf.schema_arrow.metadata or {}
            params = json.loads(meta.get(_PARAMS_META, b"[]"))
            missing = [c for c in CORE_COLUMNS if c not in pf.schema_arrow.names]
            if missing:
                raise ValueError(f"no column {missing[0]}")
            _ = pf.schema_arrow.pandas_metadata
            batches = pf.iter_batches(batch_size=batch_rows, use_threads=False)
            for batch in batches:
                frame = batch.to_pandas()
                yield frame.drop(columns=[c for c in params if c in frame.columns])
        except (OSError, ValueError, TypeError, pa.ArrowException) as exc:
            raise CorruptFileError(f"{where}: unreadable, damaged ({first_line(exc)})") from None


def _frame(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas()


def _write_parquet(path: Path, table: pa.Table) -> None:
    """A local Parquet file with page checksums, written whole or not at all."""
    _atomic_write_local(path, P.parquet_bytes(table))


def _plain_table(rows: pd.DataFrame) -> pa.Table:
    """Rows without parameter columns, as stored."""
    return P.rows_table(rows)


def _read_parquet(path: Path) -> pd.DataFrame:
    """A local row file as a frame (parameter columns dropped); see `read_table`."""
    loc = Location.parse(path.parent)
    return _frame(read_table(loc, path.name))


def _stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%S")


def _set_aside(loc: Location, rel: str) -> str:
    """Rename a damaged file to `<name>.corrupt-<time>` (kept for inspection, never read)."""
    target = f"{rel}{_CORRUPT_MARK}{_stamp()}"
    n = 1
    while loc.exists(target):
        n += 1
        target = f"{rel}{_CORRUPT_MARK}{_stamp()}-{n}"
    try:
        loc.move(rel, target)
    except StoreError as exc:
        raise StoreError(f"{loc.where(rel)}: damaged, and cannot set it aside: {exc}") from None
    return target


def _set_aside_names(loc: Location) -> list[str]:
    found = [n for n, _ in loc.listdir("") if _CORRUPT_MARK in n.rsplit("/", 1)[-1]]
    found += [n for n, _ in loc.listdir(P.ROWS_DIR, recursive=True) if _CORRUPT_MARK in n]
    found += [n for n, _ in loc.listdir(PARTS_DIR) if _CORRUPT_MARK in n]
    return sorted(found)


def set_aside_files(out_dir: str | Path) -> list[Path]:
    """Damaged row files set aside earlier (see the module docstring)."""
    loc = Location.parse(out_dir)
    return [Path(loc.where(n)) for n in _set_aside_names(loc)]


def _aside_note(loc: Location) -> list[str]:
    aside = _set_aside_names(loc)
    if not aside:
        return []
    names = ", ".join(aside[:3])
    more = f" and {len(aside) - 3} more" if len(aside) > 3 else ""
    return [
        f"{len(aside)} damaged file(s) were set aside ({names}{more}); their rows were "
        "simulated again; delete them when you no longer need them"
    ]


def _dedupe(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=CORE_COLUMNS)
    rows = pd.concat(frames, ignore_index=True, sort=False)
    return rows.drop_duplicates(subset=KEY, keep="first").reset_index(drop=True)


def _recover_hint(exc: StoreError) -> StoreError:
    return StoreError(
        f"{exc}; run the study again with this folder as --out: the run sets the file "
        "aside, keeps every intact row and simulates the others again"
    )


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns, in its order (absent ones all null)."""
    cols = []
    for f in schema:
        if f.name in table.column_names:
            col = table.column(f.name)
            cols.append(col if col.type == f.type else col.cast(f.type))
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def _unified(schemas: Sequence[pa.Schema]) -> pa.Schema:
    plain = [s.remove_metadata() for s in schemas]
    return pa.unify_schemas(plain, promote_options="permissive")


def _entry_of(path: str, table: pa.Table, size: int) -> P.Entry:
    keys: dict[str, list[int]] = {}
    for a, r in zip(table.column("architecture").to_pylist(),
                    table.column("replication").to_pylist(), strict=True):  # fmt: skip
        keys.setdefault(str(a), []).append(int(r))
    sids = set(table.column("scenario_id").to_pylist())
    return {
        "path": path,
        "scenario_id": str(next(iter(sids))) if sids else path.split("=", 1)[-1].split("/")[0],
        "rows": table.num_rows,
        "bytes": size,
        "keys": {a: P.ranges(v) for a, v in sorted(keys.items())},
    }


def write_streaming(loc: Location, rel: str, schema: pa.Schema, tables: Iterable[pa.Table]) -> int:
    """Write `tables` (each conformed to `schema`) as one Parquet file, whole or not at all,
    holding one table at a time: to a temporary name (locally flushed to disk), then renamed over
    `rel` (an object store copies it whole, server-side). Returns the rows written; with none,
    nothing is left behind."""
    parent, _, name = rel.rpartition("/")
    tmp_rel = f"{parent + '/' if parent else ''}.{name}{_TMP_MARK}{os.getpid()}"
    tmp = Path(loc.path(tmp_rel))
    rows = 0
    try:
        if loc.local:
            tmp.parent.mkdir(parents=True, exist_ok=True)
            out: Any = open(tmp, "wb")  # noqa: SIM115
        else:
            out = loc.fs.open_output_stream(loc.path(tmp_rel))
        try:
            with pq.ParquetWriter(out, schema, write_page_checksum=True) as writer:
                for table in tables:
                    rows += table.num_rows
                    writer.write_table(_conform(table, schema))
            if loc.local:
                out.flush()
                os.fsync(out.fileno())
        finally:
            out.close()
        if rows and loc.local:
            os.replace(tmp, Path(loc.path(rel)))
            _fsync_dir(tmp.parent)
        elif rows:
            loc.move(tmp_rel, rel)
    except (OSError, pa.ArrowException) as exc:
        why = getattr(exc, "errno", None)
        hint = _WRITE_HINTS.get(why or -1) or getattr(exc, "strerror", None) or first_line(exc)
        raise StoreError(f"{loc.where(rel)}: cannot write: {hint}") from None
    finally:
        with contextlib.suppress(OSError, StoreError, pa.ArrowException):
            loc.delete(tmp_rel)
    return rows


# ---------------------------------------------------------------- the published layout


def describe_rows(rows: pd.DataFrame) -> list[str]:
    """One line per scenario id: how many rows, of which architectures and replications."""
    lines = []
    for sid, group in rows.groupby("scenario_id", sort=True):
        reps = group["replication"].astype(int)
        archs = ", ".join(sorted(group["architecture"].astype(str).unique()))
        lines.append(f"{sid}: {len(group)} row(s), {archs}, replications {reps.min()}-{reps.max()}")
    return lines


def with_params(rows: pd.DataFrame, plan: Plan) -> pd.DataFrame:
    """Rows in the published layout, sorted by scenario (plan order), architecture, replication:
    `scenario_id, <swept params>, architecture, replication, seed, <metrics>`."""
    if rows.empty:
        return pd.DataFrame(columns=["scenario_id", *plan.param_paths, *CORE_COLUMNS[1:]])
    out = rows.copy()
    order = {s.id: s.index for s in plan.scenarios}
    arch_order = {a: i for i, a in enumerate(plan.architectures)}
    out["_s"] = out["scenario_id"].map(order)
    out["_a"] = out["architecture"].map(arch_order)
    out = out.sort_values(["_s", "_a", "replication"]).drop(columns=["_s", "_a"])
    by_id = {s.id: s for s in plan.scenarios}
    for path in plan.param_paths:
        out[path] = out["scenario_id"].map(lambda sid, p=path: by_id[sid].params[p])
    metrics = [c for c in out.columns if c not in CORE_COLUMNS and c not in plan.param_paths]
    cols = ["scenario_id", *plan.param_paths, "architecture", "replication", "seed", *metrics]
    out = out[cols].reset_index(drop=True)
    out["replication"] = out["replication"].astype("int64")
    out["seed"] = out["seed"].astype("int64")
    if "n_requests" in out.columns:
        out["n_requests"] = out["n_requests"].astype("int64")
    return out


def to_table(rows: pd.DataFrame, plan: Plan) -> pa.Table:
    table = pa.Table.from_pandas(rows, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[_PARAMS_META] = json.dumps(list(plan.param_paths)).encode("utf-8")
    return table.replace_schema_metadata(meta)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for col in ("replication", "seed"):
        out[col] = out[col].astype("int64")
    out["architecture"] = out["architecture"].astype("object")
    out["scenario_id"] = out["scenario_id"].astype("object")
    return out
