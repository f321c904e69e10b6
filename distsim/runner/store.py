"""The output folder of a study: resumable, written as results arrive, never half-written.

Layout of `--out DIR`:

    spec.yaml             the resolved study (defaults filled in), written when a run starts
    manifest.json         versions, seed, times, the cluster used (`nodes`, `cpus`), status
    replications.parquet  one row per (scenario, architecture, replication) of the current plan
    kept.parquet          every other stored row: scenarios, architectures or replications of
                          earlier plans (another study or override run into the same folder,
                          fewer replications). Kept and reused when their plan comes back
    parts/part-*.parquet  rows that arrived since the last consolidation (only while running,
                          or after a crash / kill)
    summary.csv, comparisons.csv   the aggregates (see `aggregate`)
    .lock                 held (flock) by the run using the folder

Every file is written to a temporary name in the same folder, flushed to disk, renamed over the
target (atomic on POSIX) and the folder flushed, so a kill or a power cut at any instant leaves
either the old or the new file. Temporary files a killed run left behind are removed by the next
run. Each finished task's rows go to a new part file at once; consolidation merges the parts into
`replications.parquet` (and `kept.parquet`), checks the written files hold every row, and only
then deletes them. No stored row is ever deleted except by `--fresh` (`ResultStore.clear`) or
`distsim prune` (`ResultStore.prune`, which says what it removes): a row outside the current plan
moves to `kept.parquet`, written and verified before `replications.parquet` drops it.
Duplicated rows (a kill between the rename and the deletes) are harmless: rows are keyed by
(scenario_id, architecture, replication) and the simulation is deterministic, so the first copy is
kept.

Parquet files are written with page checksums and read with checksum verification, so a flipped
bit is an error, never a silently changed number. A file that cannot be parsed (truncated or
damaged by something outside distsim) is, when a run opens the folder, renamed aside to
`<name>.corrupt-<time>` and noted; its rows are simulated again (the simulation is deterministic,
so they come back identical) and every intact row elsewhere is kept. `distsim report` (read-only)
instead stops with a one-line error that says so. Every later read notes the set-aside files
until they are deleted (`--fresh` deletes them).

Swept-parameter columns are derived from the plan when `replications.parquet` is written (their
names are kept in the file's metadata) and dropped on reading, so a stored row is reused only
through its scenario id.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from distsim.errors import StoreError, first_line
from distsim.runner.plan import Plan

KEY = ["scenario_id", "architecture", "replication"]
CORE_COLUMNS = ["scenario_id", "architecture", "replication", "seed"]
SPEC_FILE = "spec.yaml"
MANIFEST_FILE = "manifest.json"
REPLICATIONS_FILE = "replications.parquet"
KEPT_FILE = "kept.parquet"
SUMMARY_FILE = "summary.csv"
COMPARISONS_FILE = "comparisons.csv"
PARTS_DIR = "parts"
LOCK_FILE = ".lock"
_PARAMS_META = b"distsim.param_columns"
# Files a run owns; `--fresh` deletes these and nothing else in the folder.
OWNED = (SPEC_FILE, MANIFEST_FILE, REPLICATIONS_FILE, KEPT_FILE, SUMMARY_FILE, COMPARISONS_FILE)
# The consolidated row files, in the order `read_rows` reads them.
ROW_FILES = (REPLICATIONS_FILE, KEPT_FILE)


# Rows per Parquet row group of a written file (replications.parquet is sorted by scenario).
ROW_GROUP_ROWS = 1024
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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder, fsync, rename, fsync the
    folder. On any failure the temporary file is removed, the old `path` (if any) is untouched,
    and a one-line `StoreError` says what to do."""
    tmp = path.with_name(f".{path.name}{_TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
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


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


class CorruptFileError(StoreError):
    """A stored file exists and can be read, but is not a valid distsim row file."""


def _write_parquet(path: Path, table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    # Row groups of ROW_GROUP_ROWS rows: a group of scenarios (`iter_rows`) reads only its own.
    pq.write_table(table, sink, write_page_checksum=True, row_group_size=ROW_GROUP_ROWS)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def _read_parquet(path: Path) -> pd.DataFrame:
    """The core columns and metrics of a stored row file (parameter columns dropped).

    `StoreError` when the file cannot be read (permissions, I/O); `CorruptFileError` when it can
    but is not an intact row file (truncated, a checksum mismatch, missing columns).
    """
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise StoreError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        table = pq.read_table(path, page_checksum_verification=True)
        meta = table.schema.metadata or {}
        params = json.loads(meta.get(_PARAMS_META, b"[]"))
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            raise ValueError("bad parameter-column metadata")
        missing = [c for c in CORE_COLUMNS if c not in table.column_names]
        if missing:
            raise ValueError(f"no column {missing[0]}")
        df = table.to_pandas()
    except (OSError, ValueError, TypeError, pa.ArrowException) as exc:
        raise CorruptFileError(f"{path}: unreadable, damaged ({first_line(exc)})") from None
    return df.drop(columns=[c for c in params if c in df.columns])


def _set_aside(path: Path) -> Path:
    """Rename a damaged file to `<name>.corrupt-<time>` (kept for inspection, never read)."""
    target = path.with_name(f"{path.name}{_CORRUPT_MARK}{time.strftime('%Y%m%dT%H%M%S')}")
    n = 1
    while target.exists():
        n += 1
        target = target.with_name(f"{path.name}{_CORRUPT_MARK}{time.strftime('%Y%m%dT%H%M%S')}-{n}")
    try:
        os.replace(path, target)
    except OSError as exc:
        raise StoreError(f"{path}: damaged, and cannot set it aside: {exc.strerror}") from None
    _fsync_dir(path.parent)
    return target


def set_aside_files(out_dir: Path) -> list[Path]:
    """Damaged row files set aside earlier (see the module docstring)."""
    found = [p for name in ROW_FILES for p in out_dir.glob(f"{name}{_CORRUPT_MARK}*")]
    parts = out_dir / PARTS_DIR
    if parts.is_dir():
        found += parts.glob(f"part-*.parquet{_CORRUPT_MARK}*")
    return sorted(found)


def _dedupe(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=CORE_COLUMNS)
    rows = pd.concat(frames, ignore_index=True, sort=False)
    return rows.drop_duplicates(subset=KEY, keep="first").reset_index(drop=True)


def read_rows(
    out_dir: Path, aliases: Mapping[str, str] | None = None
) -> tuple[pd.DataFrame, list[str], list[Path]]:
    """Every stored row (consolidated files and part files), deduplicated; notes on problems;
    the part files read.

    Read-only. A damaged part file is skipped with a note and left in place (its rows will be
    simulated again); a damaged `replications.parquet` or `kept.parquet` is a one-line
    `StoreError` that says how to recover (a run sets it aside: `ResultStore.open`). Set-aside
    files are noted.
    `aliases` (old scenario id -> id, `Plan.id_aliases`) renames rows stored under an old id.
    """
    notes: list[str] = []
    frames: list[pd.DataFrame] = []
    read: list[Path] = []
    for name in ROW_FILES:
        path = out_dir / name
        if not path.exists():
            continue
        try:
            frames.append(_read_parquet(path))
        except CorruptFileError as exc:
            raise StoreError(
                f"{exc}; run the study again with this folder as --out: the run sets the file "
                "aside, keeps every intact row and simulates the others again"
            ) from None
    parts = out_dir / PARTS_DIR
    if parts.is_dir():
        for part in sorted(parts.glob("part-*.parquet")):
            try:
                frames.append(_read_parquet(part))
            except StoreError as exc:
                notes.append(f"skipped {exc}")
            else:
                read.append(part)
    aside = set_aside_files(out_dir)
    if aside:
        names = ", ".join(str(p.relative_to(out_dir)) for p in aside[:3])
        more = f" and {len(aside) - 3} more" if len(aside) > 3 else ""
        notes.append(
            f"{len(aside)} damaged file(s) were set aside ({names}{more}); their rows were "
            "simulated again; delete them when you no longer need them"
        )
    rows = _dedupe(frames)
    if aliases and len(rows) and rows["scenario_id"].isin(list(aliases)).any():
        rows["scenario_id"] = rows["scenario_id"].replace(dict(aliases))
        rows = _dedupe([rows])
    return rows, notes, read


def in_plan(rows: pd.DataFrame, plan: Plan) -> pd.Series:
    """Which rows belong to the plan (its scenario ids, architectures and replications)."""
    if rows.empty:
        return pd.Series(False, index=rows.index, dtype=bool)
    return (
        rows["scenario_id"].isin([s.id for s in plan.scenarios])
        & rows["architecture"].isin(plan.architectures)
        & (rows["replication"] < plan.max_replications)
    )


def select_plan_rows(rows: pd.DataFrame, plan: Plan) -> pd.DataFrame:
    """The rows that belong to the plan; the others stay stored (`kept.parquet`)."""
    return rows[in_plan(rows, plan)] if not rows.empty else rows


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


def read_manifest(out_dir: Path) -> dict[str, Any]:
    """manifest.json of a results folder; {} when absent or damaged (a run writes it again)."""
    try:
        data = json.loads((out_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _plain_table(rows: pd.DataFrame) -> pa.Table:
    """Rows outside the plan: core columns and metrics only (no parameter columns)."""
    out = rows.reset_index(drop=True).copy()
    out["replication"] = out["replication"].astype("int64")
    out["seed"] = out["seed"].astype("int64")
    return pa.Table.from_pandas(out, preserve_index=False)


# Rows streamed per batch when a stored file is read one scenario group at a time.
_READ_BATCH_ROWS = 256


class _RowSource:
    """One stored row file, with the scenario ids of each of its row groups (read once, from the
    `scenario_id` column alone) so a group of scenarios reads only the row groups holding them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.file = pq.ParquetFile(path, page_checksum_verification=True, buffer_size=1 << 20)
            meta = self.file.schema_arrow.metadata or {}
            params = json.loads(meta.get(_PARAMS_META, b"[]"))
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                raise ValueError("bad parameter-column metadata")
            names = self.file.schema_arrow.names
            missing = [c for c in CORE_COLUMNS if c not in names]
            if missing:
                raise ValueError(f"no column {missing[0]}")
            self.columns = [c for c in names if c not in params]
            self.groups = [
                set(self.file.read_row_group(i, columns=["scenario_id"]).column(0).to_pylist())
                for i in range(self.file.num_row_groups)
            ]
        except OSError as exc:
            if not path.exists():
                raise StoreError(f"{path}: cannot read: {exc}") from None
            raise CorruptFileError(f"{path}: unreadable, damaged ({first_line(exc)})") from None
        except (ValueError, TypeError, pa.ArrowException) as exc:
            raise CorruptFileError(f"{path}: unreadable, damaged ({first_line(exc)})") from None

    def read(self, ids: set[str], columns: Iterable[str] | None) -> pd.DataFrame:
        """The rows of scenarios `ids` (stored columns, parameter columns dropped)."""
        groups = [i for i, have in enumerate(self.groups) if have & ids]
        if not groups:
            return pd.DataFrame()
        cols = self.columns
        if columns is not None:
            wanted = set(columns) | set(CORE_COLUMNS)
            cols = [c for c in self.columns if c in wanted]
        keep = pa.array(sorted(ids), type=pa.string())
        tables = []
        try:
            for batch in self.file.iter_batches(
                batch_size=_READ_BATCH_ROWS, row_groups=groups, columns=cols, use_threads=False
            ):
                mask = pc.is_in(batch.column("scenario_id").cast(pa.string()), value_set=keep)
                if pc.any(mask).as_py():
                    tables.append(pa.Table.from_batches([batch.filter(mask)]))
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise StoreError(f"{self.path}: unreadable, damaged ({first_line(exc)})") from None
        if not tables:
            return pd.DataFrame()
        return pa.concat_tables(tables, promote_options="default").to_pandas()


class ResultStore:
    """The output folder of one running study; holds its lock until `close`."""

    def __init__(self, out_dir: Path, lock_fd: int) -> None:
        self.out_dir = out_dir
        self._lock_fd = lock_fd
        # Unique per store: two runs in one process within a second (same time and pid) must
        # never reuse a part name, or the second run's rename would replace the first's rows.
        self._token = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{secrets.token_hex(4)}"
        self._seq = 0
        self.read_notes: list[str] = []  # damaged part files skipped by `iter_rows`

    @classmethod
    def open(cls, out_dir: str | Path, *, fresh: bool = False) -> ResultStore:
        """Create (or reuse) the folder and lock it; `fresh` deletes earlier results first."""
        path = Path(out_dir)
        try:
            path.mkdir(parents=True, exist_ok=True)
            fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"{path}: cannot create the output folder: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StoreError(f"{path}: another distsim run is using this folder") from None
        store = cls(path, fd)
        if fresh:
            store.clear()
        store.recover()
        return store

    def recover(self) -> None:
        """Clean up after a crash: remove temporary files left by a killed run, and set aside
        (rename) any row file that is damaged, so the run keeps every intact row and simulates
        the lost ones again. Called with the lock held; see the module docstring."""
        parts = self.out_dir / PARTS_DIR
        folders = [self.out_dir, parts] if parts.is_dir() else [self.out_dir]
        for folder in folders:
            for tmp in folder.glob(f".*{_TMP_MARK}*"):
                with contextlib.suppress(OSError):
                    tmp.unlink()
        candidates = [self.out_dir / name for name in ROW_FILES]
        if parts.is_dir():
            candidates += sorted(parts.glob("part-*.parquet"))
        for path in candidates:
            if not path.exists():
                continue
            try:
                _read_parquet(path)
            except CorruptFileError:
                _set_aside(path)

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- writing

    def clear(self) -> None:
        """Delete earlier results (files this module owns only)."""
        try:
            for name in OWNED:
                (self.out_dir / name).unlink(missing_ok=True)
            for aside in set_aside_files(self.out_dir):
                aside.unlink(missing_ok=True)
            shutil.rmtree(self.out_dir / PARTS_DIR, ignore_errors=True)
        except OSError as exc:
            raise StoreError(f"{self.out_dir}: cannot clear earlier results: {exc}") from None

    def write_spec(self, spec: dict[str, Any]) -> None:
        text = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)
        atomic_write_text(self.out_dir / SPEC_FILE, text)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        text = json.dumps(manifest, indent=2, sort_keys=False, allow_nan=False) + "\n"
        atomic_write_text(self.out_dir / MANIFEST_FILE, text)

    def read_manifest(self) -> dict[str, Any]:
        return read_manifest(self.out_dir)

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Persist rows that just arrived as a new part file (atomic)."""
        if not rows:
            return
        parts = self.out_dir / PARTS_DIR
        try:
            parts.mkdir(exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{parts}: cannot create: {exc.strerror}") from None
        self._seq += 1
        while (parts / f"part-{self._token}-{self._seq:06d}.parquet").exists():
            self._seq += 1  # never replace a stored part (belt and braces)
        # Rows of different architectures carry different pool columns: take the union of keys
        # (pa.Table.from_pylist would keep only the first row's and drop the others' silently).
        table = pa.Table.from_pandas(pd.DataFrame.from_records(rows), preserve_index=False)
        _write_parquet(parts / f"part-{self._token}-{self._seq:06d}.parquet", table)

    def part_count(self) -> int:
        parts = self.out_dir / PARTS_DIR
        return len(list(parts.glob("part-*.parquet"))) if parts.is_dir() else 0

    def consolidate(self, plan: Plan) -> pd.DataFrame:
        """Merge stored rows of the plan into `replications.parquet` and every other stored row
        into `kept.parquet`, then delete the parts. Returns the plan's rows in the published
        layout.

        `kept.parquet` is written and verified first, so a row leaving `replications.parquet`
        is on disk elsewhere before it goes; a kill in between leaves a duplicate (harmless).
        """
        rows, _, parts = read_rows(self.out_dir, plan.id_aliases)
        mask = in_plan(rows, plan)
        published = with_params(rows[mask] if len(rows) else rows, plan)
        kept_path = self.out_dir / KEPT_FILE
        others = rows[~mask] if len(rows) else rows
        if len(others) and not self._holds_exactly(kept_path, others):
            self._write_verified(kept_path, _plain_table(others))
        self._write_verified(self.out_dir / REPLICATIONS_FILE, to_table(published, plan))
        if not len(others):  # every kept row is in replications.parquet now
            with contextlib.suppress(FileNotFoundError):
                kept_path.unlink()
                _fsync_dir(self.out_dir)
        for part in parts:
            with contextlib.suppress(OSError):
                part.unlink()
        with contextlib.suppress(OSError):
            (self.out_dir / PARTS_DIR).rmdir()  # only when empty
        return published

    @staticmethod
    def _write_verified(target: Path, table: pa.Table) -> None:
        """Write a row file and check the file on disk holds every row (before parts go)."""
        _write_parquet(target, table)
        try:
            written = pq.read_metadata(target).num_rows
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"{target}: cannot verify what was written: {exc}") from None
        if written != table.num_rows:
            raise StoreError(
                f"{target}: holds {written} rows after writing {table.num_rows}; the part files "
                "are kept, run the same command again"
            )

    @staticmethod
    def _holds_exactly(path: Path, rows: pd.DataFrame) -> bool:
        """`path` already stores exactly the keys of `rows` (nothing to rewrite)."""
        if not path.exists():
            return False
        try:
            keys = pq.read_table(path, columns=KEY).to_pandas()
        except (OSError, pa.ArrowException):
            return False
        if len(keys) != len(rows):
            return False
        have = pd.MultiIndex.from_frame(keys.astype({"replication": "int64"}))
        want = pd.MultiIndex.from_frame(rows[KEY].astype({"replication": "int64"}))
        return have.sort_values().equals(want.sort_values())

    def prune(self, plan: Plan, *, dry_run: bool = False) -> pd.DataFrame:
        """Delete every stored row outside `plan` (the only deletion besides `--fresh`); returns
        the rows removed (or, with `dry_run`, those that would be)."""
        self.consolidate(plan)
        path = self.out_dir / KEPT_FILE
        if not path.exists():
            return pd.DataFrame(columns=CORE_COLUMNS)
        gone = _read_parquet(path)
        if not dry_run:
            try:
                path.unlink()
            except OSError as exc:
                raise StoreError(f"{path}: cannot delete: {exc.strerror}") from None
            _fsync_dir(self.out_dir)
        return gone

    def write_csv(self, name: str, frame: pd.DataFrame) -> None:
        atomic_write_text(self.out_dir / name, frame.to_csv(index=False))

    # ---------------------------------------------------------------- reading, bounded

    @classmethod
    def reader(cls, out_dir: str | Path) -> ResultStore:
        """A read-only view of a results folder (no lock taken, nothing cleaned up): for
        `distsim report` and `load_result`. Only the reading methods may be used on it."""
        return cls(Path(out_dir), -1)

    def iter_rows(
        self,
        plan: Plan,
        scenario_ids: Iterable[str] | None = None,
        batch_scenarios: int = 64,
        columns: Iterable[str] | None = None,
    ) -> Iterator[pd.DataFrame]:
        """The plan's stored rows, `batch_scenarios` whole scenarios at a time (in the order of
        `scenario_ids`, by default the plan's), each frame in the published layout (`with_params`).

        Memory is bounded by one group (plus a row group of a stored file): each file's
        `scenario_id` column is read first to learn which row groups hold which scenarios, then
        only those row groups are streamed batch by batch, keeping the group's rows. Duplicates
        and old ids are resolved as `read_rows` does (first copy in file order wins). A damaged
        consolidated file is a `StoreError`; a damaged part file is skipped (its rows are
        simulated again by the next run), noted in `self.read_notes`. `columns` (core columns
        are always read) limits what is read, e.g. no payload for scalar statistics.
        """
        ids = [ps.id for ps in plan.scenarios] if scenario_ids is None else list(scenario_ids)
        if batch_scenarios < 1:
            raise ValueError("batch_scenarios must be at least 1")
        sources = self._row_sources()
        back: dict[str, list[str]] = {}
        for old, new in (plan.id_aliases or {}).items():
            back.setdefault(new, []).append(old)
        for start in range(0, len(ids), batch_scenarios):
            group = ids[start : start + batch_scenarios]
            raw = set(group) | {old for sid in group for old in back.get(sid, [])}
            frames = [f for src in sources if len(f := src.read(raw, columns))]
            rows = _dedupe(frames)
            aliases = dict(plan.id_aliases or {})
            if len(rows) and aliases and rows["scenario_id"].isin(list(aliases)).any():
                rows["scenario_id"] = rows["scenario_id"].replace(aliases)
                rows = _dedupe([rows])
            rows = select_plan_rows(rows, plan) if len(rows) else rows
            yield with_params(rows, plan)

    def read_scenario_rows(
        self, plan: Plan, ids: Iterable[str], columns: Iterable[str] | None = None
    ) -> pd.DataFrame:
        """Every stored plan row of the scenarios `ids` (published layout), read as one group."""
        ids = list(ids)
        frames = list(self.iter_rows(plan, ids, batch_scenarios=max(len(ids), 1), columns=columns))
        return frames[0] if frames else with_params(pd.DataFrame(columns=CORE_COLUMNS), plan)

    def other_row_count(self, plan: Plan) -> int:
        """Stored rows outside the plan (kept, not used in its summary); key columns only."""
        frames = []
        for src in self._row_sources():
            for batch in src.file.iter_batches(batch_size=65536, columns=KEY, use_threads=False):
                frames.append(batch.to_pandas())
        rows = _dedupe(frames)
        aliases = dict(plan.id_aliases or {})
        if len(rows) and aliases and rows["scenario_id"].isin(list(aliases)).any():
            rows["scenario_id"] = rows["scenario_id"].replace(aliases)
            rows = _dedupe([rows])
        return int((~in_plan(rows, plan)).sum()) if len(rows) else 0

    def _row_sources(self) -> list[_RowSource]:
        """The stored row files in `read_rows` order, indexed by scenario per row group."""
        out: list[_RowSource] = []
        for name in ROW_FILES:
            path = self.out_dir / name
            if path.exists():
                try:
                    out.append(_RowSource(path))
                except CorruptFileError as exc:
                    raise StoreError(
                        f"{exc}; run the study again with this folder as --out: the run sets the "
                        "file aside, keeps every intact row and simulates the others again"
                    ) from None
        parts = self.out_dir / PARTS_DIR
        if parts.is_dir():
            for part in sorted(parts.glob("part-*.parquet")):
                try:
                    out.append(_RowSource(part))
                except StoreError as exc:
                    note = f"skipped {exc}"
                    if note not in self.read_notes:
                        self.read_notes.append(note)
        aside = set_aside_files(self.out_dir)
        if aside:
            names = ", ".join(str(p.relative_to(self.out_dir)) for p in aside[:3])
            more = f" and {len(aside) - 3} more" if len(aside) > 3 else ""
            note = (
                f"{len(aside)} damaged file(s) were set aside ({names}{more}); their rows were "
                "simulated again; delete them when you no longer need them"
            )
            if note not in self.read_notes:
                self.read_notes.append(note)
        return out
