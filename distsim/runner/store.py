"""The output folder of a study: resumable, written as results arrive, never half-written.

Layout of `--out` (a local folder, a shared mount or an object-store URI: `location`):

    spec.yaml, manifest.json   the resolved study; versions, seed, times, cluster, status
    rows/scenario_id=<id>/part-*.parquet
                          every stored row, one folder per scenario (a Hive-partitioned Parquet
                          dataset): rows of the current plan and of earlier ones (another study
                          or override run into the same folder, fewer replications). Rows outside
                          the plan are kept, not used in the summary, and reused when their plan
                          comes back
    rows/_commits/*.json  the commit log: which part files count (`parts`)
    replications.parquet  the current plan's rows with its swept parameters, for users: written
                          from rows/ when a run ends (one scenario at a time); never read back
    summary.csv, comparisons.csv, report.md ...   the aggregates (see `aggregate`)
    .lock                 held (flock) by the run using a local folder

Writes: each finished task's rows become part files (written by the driver, or by the task itself
when the folder is reachable from the workers: `parts.PartSink`), then one commit names them. A
local file goes to a temporary name, is flushed, renamed over the target and the folder flushed; an
object is one single-object write; so a kill or a power cut leaves the old file or the new one.
`consolidate` merges a scenario's small parts into one once it has more than a few (or two hold the
same row), streaming one part at a time (never all rows in memory), commits the merged part in place
of the others, and only then deletes them. No stored row is ever deleted except by `--fresh`
(`ResultStore.clear`) or `distsim prune` (`ResultStore.prune`, which says what it removes). A row
stored twice (a retried task, a kill between a part and its commit) is read once: rows are keyed by
(scenario_id, architecture, replication) and the simulation is deterministic, so the first copy is
kept.

Parquet files are written with page checksums and read with checksum verification, so a flipped
bit is an error, never a silently changed number. Opening a folder costs the commit log and one
listing, not the data: a committed part that is missing, or whose size is not the one its commit
recorded (truncated, appended to), is found then; damage inside a part of the right size is
found when the part is read (its key columns when a run plans, every column when it
consolidates and exports). Either way a run renames the damaged part aside to
`<name>.corrupt-<time>` and drops it from the commit log (`DamagedPartError`); its rows are
simulated again (they come back identical: the run does it at once, `study._run`) and every
intact row is kept. `distsim report` (read-only) instead stops with a one-line error that says
so. Every later read notes the set-aside files until they are deleted (`--fresh` deletes them).
A part written but never committed (a driver killed in between) is checked (read whole) and
committed by the next run.

Concurrent runs: a local folder is locked with flock. An object store has no lock: a run writes
`_lease.json` (its host, pid and time, renewed as it commits; `lease`) and another run refuses the
folder while that lease is younger than `lease.LEASE_S`. This is advisory (two runs starting in the
same instant can both take it); correctness does not rest on it: every part and commit is a new,
uniquely named object, so two runs in one folder duplicate work, never lose or double a row.

Folders written before this layout (`replications.parquet` as the store, `kept.parquet`,
`parts/part-*.parquet`) are read as they are, and moved into `rows/` (one Parquet batch at a
time) by the first run that opens them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from distsim.errors import StoreError, first_line
from distsim.runner import parts as P
from distsim.runner.lease import Lease
from distsim.runner.legacy import (  # noqa: F401  (re-exported)
    _EXPORT_META,
    KEPT_FILE,
    REPLICATIONS_FILE,
    ROW_FILES,
    _is_export,
    _legacy_frames,
    legacy_files,
    migrate,
)
from distsim.runner.location import Location
from distsim.runner.parts import entry_keys
from distsim.runner.plan import Plan
from distsim.runner.rowfiles import (  # noqa: F401  (re-exported: the store's file helpers)
    _CORRUPT_MARK,
    _PARAMS_META,
    _TMP_MARK,
    _WRITE_HINTS,
    CORE_COLUMNS,
    KEY,
    PARTS_DIR,
    CorruptFileError,
    _aside_note,
    _atomic_write_local,
    _conform,
    _dedupe,
    _entry_of,
    _frame,
    _plain_table,
    _read_parquet,
    _recover_hint,
    _set_aside,
    _set_aside_names,
    _typed,
    _unified,
    _write_parquet,
    atomic_write_bytes,
    atomic_write_chunks,
    atomic_write_text,
    csv_chunks,
    describe_rows,
    iter_frames,
    read_table,
    set_aside_files,
    to_table,
    with_params,
    write_streaming,
)

SPEC_FILE = "spec.yaml"
MANIFEST_FILE = "manifest.json"
SUMMARY_FILE = "summary.csv"
COMPARISONS_FILE = "comparisons.csv"
LOCK_FILE = ".lock"
# Files a run owns; `--fresh` deletes these (and rows/) and nothing else in the folder.
OWNED = (SPEC_FILE, MANIFEST_FILE, REPLICATIONS_FILE, KEPT_FILE, SUMMARY_FILE, COMPARISONS_FILE)
# Parts smaller than this are merged by `consolidate`; larger ones are left as they are.
MERGE_BELOW_BYTES = 64 * 2**20
# A scenario's small parts are merged once there are more than this many: reading a few small
# parts costs less than rewriting them (a fresh run leaves one or two per scenario).
MERGE_ABOVE_PARTS = 4
# Scenarios whose merged parts one commit names (a commit is one small object to write).
MERGE_COMMIT_SCENARIOS = 256
# Scenarios read together when a whole plan is read or exported.
READ_BATCH_SCENARIOS = 16
# The export of replications.parquet holds a group of whole scenarios of at most EXPORT_ROWS
# rows and EXPORT_BYTES of stored Parquet at a time (rows of long runs are ~65 KiB each, and a
# stored byte takes several in memory as it goes through pandas and back).
EXPORT_ROWS = 1024
EXPORT_BYTES = 8 * 2**20


# ---------------------------------------------------------------- reading rows


def _with_aliases(rows: pd.DataFrame, aliases: Mapping[str, str] | None) -> pd.DataFrame:
    if aliases and len(rows) and rows["scenario_id"].isin(list(aliases)).any():
        rows = rows.copy()
        rows["scenario_id"] = rows["scenario_id"].replace(dict(aliases))
        rows = _dedupe([rows])
    return rows


def _missing(loc: Location, entry: P.Entry) -> StoreError:
    return StoreError(
        f"{loc.where(entry['path'])}: committed but missing; run the study again with "
        "this folder as --out: its rows are simulated again"
    )


def _read_entries(
    loc: Location,
    entries: Sequence[P.Entry],
    columns: Sequence[str] | None = None,
    on_damage: Callable[[P.Entry, CorruptFileError], StoreError] | None = None,
) -> list[pd.DataFrame]:
    """Committed parts as frames (of `columns`, None: all; checksums of what is read are
    verified); a damaged one is a one-line `StoreError` with the recovery (or what `on_damage`
    returns: a run's store sets the part aside)."""
    tables = []
    for entry in entries:
        try:
            tables.append(read_table(loc, entry["path"], columns))
        except FileNotFoundError:
            raise _missing(loc, entry) from None
        except CorruptFileError as exc:
            raise (_recover_hint(exc) if on_damage is None else on_damage(entry, exc)) from None
    # One pandas conversion per run of parts with the same schema (metadata included), not one
    # per part: the conversion's fixed cost (~2 ms) dominated reading a sweep of small scenarios.
    frames: list[pd.DataFrame] = []
    run: list[pa.Table] = []
    for table in tables:
        if run and not table.schema.equals(run[0].schema, check_metadata=True):
            frames.append(_frame(pa.concat_tables(run)))
            run = []
        run.append(table)
    if run:
        frames.append(_frame(pa.concat_tables(run) if len(run) > 1 else run[0]))
    return frames


def read_rows(
    out_dir: str | Path, aliases: Mapping[str, str] | None = None
) -> tuple[pd.DataFrame, list[str], list[Path]]:
    """Every stored row, deduplicated, in memory (small folders, tests; `ResultStore.iter_rows`
    reads a scenario group at a time); notes on problems; the part files read.

    Read-only. A damaged committed part (or the earlier layout's replications.parquet or
    kept.parquet) is a one-line `StoreError` that says how to recover (a run sets it aside:
    `ResultStore.open`); set-aside files are noted. `aliases` (old scenario id -> id,
    `Plan.id_aliases`) renames rows stored under an old id.
    """
    loc = Location.parse(out_dir)
    notes: list[str] = []
    entries = P.CommitLog(loc).live()
    frames = _legacy_frames(loc, None, notes) + _read_entries(loc, entries)
    notes += _aside_note(loc)
    rows = _with_aliases(_dedupe(frames), aliases)
    return rows, notes, [Path(loc.where(e["path"])) for e in entries]


def in_plan(rows: pd.DataFrame, plan: Plan) -> pd.Series:
    """Which rows belong to the plan (its scenario ids, architectures and replications)."""
    if rows.empty:
        return pd.Series(False, index=rows.index, dtype=bool)
    # the rows' own ids looked up in the plan's (a set): `isin` over every plan id cost ~40 ms
    # per group of rows at 10,000 scenarios
    plan_ids = {s.id for s in plan.scenarios}
    ids = [i for i in rows["scenario_id"].unique() if i in plan_ids]
    return (
        rows["scenario_id"].isin(ids)
        & rows["architecture"].isin(plan.architectures)
        & (rows["replication"] < plan.max_replications)
    )


def select_plan_rows(rows: pd.DataFrame, plan: Plan) -> pd.DataFrame:
    """The rows that belong to the plan; the others stay stored (kept, reused later)."""
    return rows[in_plan(rows, plan)] if not rows.empty else rows


def read_manifest(out_dir: str | Path) -> dict[str, Any]:
    """manifest.json of a results folder; {} when absent or damaged (a run writes it again)."""
    try:
        data = json.loads(Location.parse(out_dir).read_bytes(MANIFEST_FILE).decode("utf-8"))
    except (OSError, ValueError, RecursionError, StoreError):
        return {}
    return data if isinstance(data, dict) else {}


class DamagedPartError(StoreError):
    """A committed part a run found damaged while reading it. The run's store has already set
    it aside and dropped it from the commit log: `entry` (its commit entry) names the rows to
    simulate again."""

    def __init__(self, message: str, entry: P.Entry) -> None:
        super().__init__(message)
        self.entry = entry


class ResultStore:
    """The output folder of one running study; holds its lock (or lease) until `close`."""

    def __init__(self, loc: Location, out_dir: str | Path, lock_fd: int) -> None:
        self.loc = loc
        self.out_dir = Path(out_dir) if loc.local else loc.uri  # a local path, or the URI
        self._lock_fd = lock_fd
        self._token = P.new_token()
        self._seq = 0
        self._uncompacted = 0
        self.lease = Lease(loc, self._token)
        self._probe: str | None = None
        self.log = P.CommitLog(loc)
        self.notes: list[str] = []  # what `recover` did
        self._repairs = False  # a run's store (`open`) sets damaged parts aside when it reads
        self.damaged: list[tuple[P.Entry, str]] = []  # parts it set aside so, with the note
        self.read_notes: list[str] = []  # damaged files of the earlier layout skipped

    def where(self, rel: str = "") -> str:
        return self.loc.where(rel)

    @classmethod
    def reader(cls, out_dir: str | Path) -> ResultStore:
        """A read-only view of a results folder (no lock taken, nothing cleaned up): for
        `distsim report` and `load_result`. Only the reading methods may be used on it."""
        store = cls(Location.parse(out_dir), out_dir, -1)
        store.read_notes += _aside_note(store.loc)
        return store

    @classmethod
    def open(cls, out_dir: str | Path, *, fresh: bool = False) -> ResultStore:
        """Create (or reuse) the folder and lock it; `fresh` deletes earlier results first."""
        loc = Location.parse(out_dir)
        loc.check_writable()
        fd = -1
        if loc.local:
            path = Path(loc.root)
            try:
                path.mkdir(parents=True, exist_ok=True)
                fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                why = _WRITE_HINTS.get(exc.errno or -1) or exc.strerror
                raise StoreError(f"{path}: cannot create the output folder: {why}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise StoreError(f"{path}: another distsim run is using this folder") from None
        store = cls(loc, out_dir, fd)
        store._repairs = True
        if not loc.local:
            store.lease.take()
        try:
            if fresh:
                store.clear()
            store.recover()
        except BaseException:
            store.close()
            raise
        store.read_notes += store.notes + _aside_note(loc)
        return store

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1
        self.lease.release()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ recovery

    def recover(self) -> None:
        """Clean up after a crash, with the lock held: remove temporary files a killed run left,
        move the earlier layout's rows into rows/, set aside damaged parts (their rows are
        simulated again, every intact row is kept) and commit intact parts a killed run wrote
        but never committed. Committed parts are checked against one listing (there, at the size
        their commit recorded), not read: damage inside one is found when it is read
        (`_damaged`). Uncommitted parts are read whole, one at a time. See the module
        docstring."""
        if self.loc.local:
            root = Path(self.loc.root)
            for folder in (root, root / PARTS_DIR):
                for tmp in folder.glob(f".*{_TMP_MARK}*"):
                    with contextlib.suppress(OSError):
                        tmp.unlink()
            for tmp in (root / P.ROWS_DIR).rglob(f".*{_TMP_MARK}*"):
                with contextlib.suppress(OSError):
                    tmp.unlink()
        else:  # an upload a killed run left half done (it never became the real object)
            names = self.loc.listdir("") + self.loc.listdir(P.ROWS_DIR, recursive=True)
            for name, _ in names:
                base = name.rsplit("/", 1)[-1]
                if base.startswith(".") and _TMP_MARK in base:
                    self.loc.delete(name)
        migrate(self.loc, self.log)
        live, removed = self.log.state()
        listed = self.loc.listdir(P.ROWS_DIR, recursive=True)
        sizes = dict(listed)
        drop: list[str] = []
        for entry in live:
            size = sizes.get(entry["path"])
            if size is None:
                drop.append(entry["path"])
                self.notes.append(f"{self.where(entry['path'])}: committed but missing; its rows "
                                  "are simulated again")  # fmt: skip
            elif entry.get("bytes") not in (None, 0, size):  # truncated or appended to (0: unknown)
                _set_aside(self.loc, entry["path"])
                drop.append(entry["path"])
        known = {e["path"] for e in live} | removed
        adopt: list[P.Entry] = []
        for name, _ in listed:
            base = name.rsplit("/", 1)[-1]
            if name in known or not base.startswith("part-") or not base.endswith(".parquet"):
                continue
            try:
                table = read_table(self.loc, name)
            except CorruptFileError:
                _set_aside(self.loc, name)
                continue
            adopt.append(_entry_of(name, table, self.loc.size(name) or 0))
        self.log.commit(add=adopt, remove=drop)
        self.log.fold()

    # ------------------------------------------------------------ writing

    def clear(self) -> None:
        """Delete earlier results (files this module owns only)."""
        try:
            for name in OWNED:
                self.loc.delete(name)
            for aside in _set_aside_names(self.loc):
                self.loc.delete(aside)
            self.loc.delete_dir(P.ROWS_DIR)
            self.loc.delete_dir(PARTS_DIR)
        except StoreError as exc:
            raise StoreError(f"{self.where()}: cannot clear earlier results: {exc}") from None

    def write_spec(self, spec: dict[str, Any]) -> None:
        text = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)
        self.loc.write_bytes(SPEC_FILE, text.encode("utf-8"))

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        text = json.dumps(manifest, indent=2, sort_keys=False, allow_nan=False) + "\n"
        self.loc.write_bytes(MANIFEST_FILE, text.encode("utf-8"))

    def read_manifest(self) -> dict[str, Any]:
        return read_manifest(self.loc.uri)

    def write_csv(self, name: str, frame: pd.DataFrame) -> None:
        self.loc.write_chunks(name, csv_chunks(frame))

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Persist rows that just arrived: a part file per scenario, then one commit."""
        if not rows:
            return
        self._seq += 1
        frame = pd.DataFrame.from_records(rows)
        entries = P.write_parts(self.loc, frame, f"{self._token}-{self._seq:06d}")
        self.log.commit(add=entries)
        self._uncompacted += len(entries)
        self.lease.renew()

    def worker_sink(self, nodes: int) -> P.PartSink | None:
        """Where tasks write their own parts: when the folder is an object store or the
        cluster has more than one node (DISTSIM_WORKER_PARTS=1 / 0 forces it on / off);
        None: tasks send their rows to the driver, which writes them (`append`)."""
        forced = os.environ.get("DISTSIM_WORKER_PARTS", "")
        if forced == "0" or (forced != "1" and self.loc.local and nodes <= 1):
            return None
        if self._probe is None:
            self._probe = P.new_token()
            self.loc.write_bytes(P.PROBE_FILE, self._probe.encode("utf-8"))
        return P.PartSink(self.loc.uri, self._probe)

    def commit_parts(self, entries: Sequence[P.Entry]) -> None:
        """Commit parts a task wrote, after checking each is there, whole, at its size."""
        for e in entries:
            size = self.loc.size(e["path"])
            if size != e["bytes"]:
                seen = "not visible here" if size is None else f"{size} bytes, not {e['bytes']}"
                raise StoreError(
                    f"{self.where(e['path'])}: a task wrote this part but it is {seen}"
                )
        self.log.commit(add=entries)
        self._uncompacted += len(entries)
        self.lease.renew()

    def read_parts(self, entries: Sequence[P.Entry]) -> list[dict[str, Any]]:
        """The rows of parts a task wrote (for callers that follow rows as they arrive)."""
        rows = _dedupe(_read_entries(self.loc, entries, on_damage=self._damaged))
        return rows.to_dict("records")

    def all_rows(self, aliases: Mapping[str, str] | None = None) -> tuple[pd.DataFrame, list[str]]:
        """Every stored row in memory, as `read_rows` gives them, and notes; a committed part
        found damaged is set aside first (its rows are then missing, so they are simulated
        again) and noted. For `distsim select`, whose answer depends on every stored row."""
        while True:  # ends: each damaged part is taken out of the commit log once
            try:
                frames = _legacy_frames(self.loc, None, self.read_notes)
                frames += _read_entries(self.loc, self.log.live(), on_damage=self._damaged)
            except DamagedPartError:
                continue
            notes = self.read_notes + [note for _, note in self.damaged]
            return _with_aliases(_dedupe(frames), aliases), notes

    def part_count(self) -> int:
        """Parts committed since the last `consolidate`."""
        return self._uncompacted

    # ------------------------------------------------------------ reading

    def _damaged(self, entry: P.Entry, exc: CorruptFileError) -> StoreError:
        """What reading a damaged committed part raises: in a run's store, the part is set
        aside and dropped from the commit log first (`DamagedPartError`: its rows are simulated
        again); in a read-only view, the one-line error with the recovery."""
        if not self._repairs:
            return _recover_hint(exc)
        aside = _set_aside(self.loc, entry["path"])
        self.log.commit(remove=[entry["path"]])
        note = (
            f"{exc}; set aside as {self.where(aside)}, its {entry.get('rows', '?')} row(s) are "
            "simulated again"
        )
        self.damaged.append((entry, note))
        return DamagedPartError(note, entry)

    def _schema(self, entry: P.Entry) -> pa.Schema:
        """A committed part's schema (its footer); damage is handled as `_damaged` says."""
        try:
            f = self.loc.open_input(entry["path"])
        except FileNotFoundError:
            raise _missing(self.loc, entry) from None
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(
                f"{self.where(entry['path'])}: cannot read: {first_line(exc)}"
            ) from None
        with f:
            try:
                return pq.read_schema(f)
            except (OSError, ValueError, pa.ArrowException) as exc:
                bad = CorruptFileError(
                    f"{self.where(entry['path'])}: unreadable, damaged ({first_line(exc)})"
                )
                raise self._damaged(entry, bad) from None

    def _table(self, entry: P.Entry) -> pa.Table:
        """A committed part, every column, checksums verified (damage: `_damaged`)."""
        try:
            return read_table(self.loc, entry["path"])
        except FileNotFoundError:
            raise _missing(self.loc, entry) from None
        except CorruptFileError as exc:
            raise self._damaged(entry, exc) from None

    def _by_scenario(self) -> dict[str, list[P.Entry]]:
        out: dict[str, list[P.Entry]] = {}
        for e in self.log.live():
            out.setdefault(e["scenario_id"], []).append(e)
        return out

    def iter_rows(
        self,
        plan: Plan,
        scenario_ids: Iterable[str] | None = None,
        batch_scenarios: int = READ_BATCH_SCENARIOS,
        columns: Iterable[str] | None = None,
    ) -> Iterator[pd.DataFrame]:
        """The plan's stored rows, `batch_scenarios` whole scenarios at a time (in the order of
        `scenario_ids`, by default the plan's), each frame in the published layout
        (`with_params`); only the parts of a group's scenarios are read, one file at a time, so
        memory is bounded by one group. Duplicates and old ids are resolved as `read_rows` does
        (first copy in commit order wins). A damaged committed part is a one-line `StoreError`
        (a run sets it aside when it opens the folder). `columns` (core columns are always
        read) limits what is read, e.g. no payload for scalar statistics."""
        if batch_scenarios < 1:
            raise ValueError("batch_scenarios must be at least 1")
        ids = [s.id for s in plan.scenarios] if scenario_ids is None else list(scenario_ids)
        cols = None if columns is None else list(dict.fromkeys([*CORE_COLUMNS, *columns]))
        old_of: dict[str, list[str]] = {}
        for old, new in plan.id_aliases.items():
            old_of.setdefault(new, []).append(old)
        by_sid = self._by_scenario()
        legacy = bool(legacy_files(self.loc))
        for i in range(0, len(ids), batch_scenarios):
            group = ids[i : i + batch_scenarios]
            sids = set(group) | {o for s in group for o in old_of.get(s, [])}
            entries = [e for s in [*group, *sorted(sids - set(group))] for e in by_sid.get(s, [])]
            frames = _legacy_frames(self.loc, sids, self.read_notes) if legacy else []
            frames += _read_entries(self.loc, entries, cols, self._damaged)
            rows = _with_aliases(_dedupe(frames), plan.id_aliases)
            if cols is not None and len(rows):
                rows = rows[[c for c in rows.columns if c in cols]]
            yield with_params(select_plan_rows(rows, plan), plan)

    def read_scenario_rows(
        self, plan: Plan, ids: Iterable[str], columns: Iterable[str] | None = None
    ) -> pd.DataFrame:
        """Every stored plan row of the scenarios `ids` (published layout), read as one group."""
        ids = list(ids)
        frames = list(self.iter_rows(plan, ids, batch_scenarios=max(len(ids), 1), columns=columns))
        return frames[0] if frames else with_params(pd.DataFrame(columns=CORE_COLUMNS), plan)

    def plan_rows(self, plan: Plan) -> pd.DataFrame:
        """Every stored row of the plan in memory, in the published layout."""
        frames = [f for f in self.iter_rows(plan) if len(f)]
        if not frames:
            return with_params(pd.DataFrame(columns=CORE_COLUMNS), plan)
        return pd.concat(frames, ignore_index=True, sort=False) if len(frames) > 1 else frames[0]

    def other_row_count(self, plan: Plan) -> int:
        """Stored rows outside the plan (kept, not used in its summary): from the keys alone."""
        _, inside = self._keys_in_plan(plan)
        return int((~inside).sum())

    def committed_plan_keys(self, plan: Plan) -> pd.DataFrame:
        """(scenario_id, architecture, replication) of the plan's stored rows from the commit
        log alone (`stored_keys`, old ids renamed): no part is read, so a caller that has just
        read every part (consolidation) counts rows without a second pass."""
        keys, inside = self._keys_in_plan(plan)
        return keys[inside][KEY].reset_index(drop=True)

    def _keys_in_plan(self, plan: Plan) -> tuple[pd.DataFrame, pd.Series]:
        """Every stored key, old ids renamed, and which belong to the plan."""
        keys = _with_aliases(self.stored_keys().assign(seed=0), plan.id_aliases)
        return keys, in_plan(keys, plan)

    def stored_keys(self) -> pd.DataFrame:
        """The keys of every stored row (from the commit log; the earlier layout's files, before
        a run migrates them, are read for their keys)."""
        keys = [entry_keys(self.log.live())]
        for name in legacy_files(self.loc):
            with contextlib.suppress(CorruptFileError):
                keys.append(_frame(read_table(self.loc, name).select(KEY)))
        return _dedupe(keys)[KEY] if any(len(k) for k in keys) else keys[0]

    # ------------------------------------------------------------ consolidation

    def _merge(self, sid: str, entries: Sequence[P.Entry], keep: Any = None) -> P.Entry | None:
        """Stream `entries` (one scenario's parts) into one new part, first copy of each key,
        only rows `keep(frame)` selects; one part in memory at a time. None: no row left."""
        schemas = [self._schema(e) for e in entries]
        name = f"{P.scenario_dir(sid)}/part-m{self._token}-{self._seq:06d}.parquet"
        self._seq += 1
        seen: set[tuple[str, str, int]] = set()

        def tables() -> Iterator[pa.Table]:
            for e in entries:
                table = self._table(e)
                if e["scenario_id"] != sid:  # stored under an old id (`Plan.id_aliases`)
                    at = table.column_names.index("scenario_id")
                    ids = pa.array([sid] * table.num_rows, table.schema.field(at).type)
                    table = table.set_column(at, "scenario_id", ids)
                keys = zip(table.column("scenario_id").to_pylist(),
                           table.column("architecture").to_pylist(),
                           table.column("replication").to_pylist(), strict=True)  # fmt: skip
                mask = []
                for k in keys:
                    mask.append(k not in seen)
                    seen.add(k)
                table = table.filter(pa.array(mask, type=pa.bool_()))
                if keep is not None and table.num_rows:
                    table = table.filter(pa.array(keep(_frame(table)).to_numpy(), pa.bool_()))
                yield table

        rows = write_streaming(self.loc, name, _unified(schemas), tables())
        if not rows:
            return None
        table = read_table(self.loc, name)  # verify what was written before the parts go
        if table.num_rows != rows:
            raise StoreError(f"{self.where(name)}: holds {table.num_rows} rows, not {rows}")
        return _entry_of(name, table, self.loc.size(name) or 0)

    def consolidate(
        self, plan: Plan, *, export: bool = True, merge_above: int = MERGE_ABOVE_PARTS
    ) -> None:
        """Merge the small parts of each scenario into one (streaming, see `_merge`) when it has
        more than `merge_above` of them, when two hold the same row, or when some are stored
        under an old scenario id (parts of `MERGE_BELOW_BYTES` or more stay, and so do a few
        small ones: rewriting them costs more than reading them); commit the merged parts in
        place of the others, a batch of scenarios per commit, then delete them; fold the commit
        log; write the plan's replications.parquet (`export`, at the end of a run). Never holds
        more than one part (or, for the export, one scenario's rows) in memory."""
        groups: dict[str, list[P.Entry]] = {}
        for sid, entries in self._by_scenario().items():
            groups.setdefault(plan.id_aliases.get(sid, sid), []).extend(entries)
        todo: list[tuple[str, list[P.Entry]]] = []
        for sid, group in groups.items():
            # Parts already of a good size stay as they are (rewriting them at every
            # consolidation would make the total writing grow with the square of the rows).
            entries = [
                e for e in group if e["bytes"] < MERGE_BELOW_BYTES or e["scenario_id"] != sid
            ]
            if (
                len(entries) > max(merge_above, 1)
                or any(e["scenario_id"] != sid for e in entries)
                or P.overlap(entries)  # a retried task's copy: stored once
            ):
                todo.append((sid, entries))
        for at in range(0, len(todo), MERGE_COMMIT_SCENARIOS):
            batch = todo[at : at + MERGE_COMMIT_SCENARIOS]
            merged = [self._merge(sid, entries) for sid, entries in batch]
            gone = [e for _, entries in batch for e in entries]
            self.log.commit(add=[m for m in merged if m], remove=[e["path"] for e in gone])
            self._delete_parts(gone)
            self.lease.renew()
        self._uncompacted = 0
        self.log.fold(force=True)
        self.lease.renew()
        if export:
            self.export(plan)

    def export(self, plan: Plan) -> None:
        """replications.parquet: the plan's rows with its swept parameters, written a group of
        whole scenarios (at most `EXPORT_ROWS` rows, or one scenario) at a time."""
        by_sid = self._by_scenario()
        ids = {s.id for s in plan.scenarios} | set(plan.id_aliases)
        schemas = []
        for sid in sorted(ids & set(by_sid)):
            schemas += [self._schema(e) for e in by_sid[sid]]
        empty = with_params(pd.DataFrame(columns=CORE_COLUMNS), plan)
        probe = pd.DataFrame({"scenario_id": [s.id for s in plan.scenarios]})
        probe = probe.assign(architecture="", replication=0, seed=0)  # types of the params
        base = to_table(_typed(with_params(probe, plan)), plan).schema
        schema = _unified([base.remove_metadata(), *schemas])
        names = list(empty.columns) + [n for n in schema.names if n not in empty.columns]
        schema = pa.schema([schema.field(n) for n in names])
        meta = dict(to_table(empty, plan).schema.metadata or {})
        meta[_EXPORT_META] = b"1"
        schema = schema.with_metadata(meta)
        # A group of whole scenarios in memory at a time (one scenario at a time made the
        # export cost grow with the square of the scenarios).
        tables = (
            pa.Table.from_pandas(frame, preserve_index=False)
            for frame in self.iter_rows(plan, batch_scenarios=self._export_batch(plan, by_sid))
            if len(frame)
        )
        if not write_streaming(self.loc, REPLICATIONS_FILE, schema, tables):
            write_streaming(self.loc, REPLICATIONS_FILE, schema, [schema.empty_table()])

    def verify(self, plan: Plan) -> None:
        """Read every column of every part of the plan once, checksums verified, a group of
        scenarios at a time (what `export` does, writing nothing): a damaged part is set aside
        (`DamagedPartError`)."""
        for _ in self.iter_rows(plan, batch_scenarios=self._export_batch(plan)):
            pass

    def _export_batch(self, plan: Plan, by_sid: dict[str, list[P.Entry]] | None = None) -> int:
        """Scenarios read together by `export` and `verify`: at most `EXPORT_ROWS` rows and
        `EXPORT_BYTES` of stored Parquet, at least one scenario."""
        per_scenario = max(len(plan.architectures) * plan.max_replications, 1)
        return min(max(1, EXPORT_ROWS // per_scenario), self.scenarios_within(EXPORT_BYTES, by_sid))

    def scenarios_within(
        self, max_bytes: int, by_sid: dict[str, list[P.Entry]] | None = None
    ) -> int:
        """How many scenarios of the largest stored size (the commit log's) fit in `max_bytes`."""
        sizes = [sum(e["bytes"] for e in es) for es in (by_sid or self._by_scenario()).values()]
        return max(1, max_bytes // max(sizes + [1]))

    def drop_export(self) -> bool:
        """Delete replications.parquet when it is an export (never the earlier layout's store);
        True when one was deleted."""
        if self.loc.is_file(REPLICATIONS_FILE) and _is_export(self.loc, REPLICATIONS_FILE):
            self.loc.delete(REPLICATIONS_FILE)
            return True
        return False

    def prune(self, plan: Plan, *, dry_run: bool = False) -> pd.DataFrame:
        """Delete every stored row outside `plan` (the only deletion besides `--fresh`); returns
        the keys of the rows removed (or, with `dry_run`, of those that would be)."""
        self.consolidate(plan, export=False)
        keys = entry_keys(self.log.live())
        keys["scenario_id"] = keys["scenario_id"].replace(plan.id_aliases)
        gone = keys[~in_plan(keys, plan)] if len(keys) else keys
        if dry_run or gone.empty:
            return gone.reset_index(drop=True)
        aliases = plan.id_aliases
        for sid, entries in self._by_scenario().items():
            new_id = aliases.get(sid, sid)
            held = entry_keys(entries).assign(scenario_id=new_id)
            if in_plan(held, plan).all():
                continue  # nothing of it goes

            def keep(rows: pd.DataFrame, new_id: str = new_id) -> pd.Series:
                return in_plan(rows.assign(scenario_id=new_id), plan)

            merged = self._merge(sid, entries, keep=keep)
            if merged is not None and merged["rows"] == sum(e["rows"] for e in entries):
                self.loc.delete(merged["path"])  # nothing of it goes: leave the part as it is
                continue
            self.log.commit(add=[merged] if merged else [], remove=[e["path"] for e in entries])
            self._delete_parts(entries)
        self.log.fold(force=True)
        return gone.reset_index(drop=True)

    def _delete_parts(self, entries: Sequence[P.Entry]) -> None:
        """Delete parts whose rows a commit has moved elsewhere (and, locally, their folder once
        empty)."""
        for e in entries:
            self.loc.delete(e["path"])
        if self.loc.local:
            for folder in {Path(self.loc.path(e["path"])).parent for e in entries}:
                with contextlib.suppress(OSError):
                    folder.rmdir()
