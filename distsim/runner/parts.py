"""Part files and the commit log: which stored Parquet files hold a study's rows.

Every stored row is in a part file of one scenario, `rows/scenario_id=<id>/part-<name>.parquet`
(Hive-style, so `pyarrow.dataset` reads a scenario's folder alone). A part counts only once a
commit names it: the commit log is a folder of small JSON objects, `rows/_commits/<time>-<token>
.json`, each written once as a single object (an object store has no atomic rename, but writes
a whole object or nothing) and never changed:

    {"add": [entry, ...], "remove": [path, ...], "supersedes": [commit name, ...]}

An entry is `{"path", "scenario_id", "rows", "bytes", "keys": {architecture: [[lo, hi], ...]}}`
(the replications it holds, as ranges). The parts that count are every added path minus every
removed one, over the commits not superseded. Paths are unique (a run token or a content hash
plus an attempt token in each name), so the order of commits does not matter: two drivers
writing at once, a retried task that wrote two parts, or a driver killed between a part and its
commit never lose a committed row; a row in two committed parts is read once (rows are keyed by
scenario, architecture, replication and the simulation is deterministic).

A long log is folded into one commit that adds every live part and `supersedes` the commits it
read, which are deleted afterwards; a reader that lists a commit and finds it gone reads the
list again (the folding commit is written before any delete).

Workers write parts themselves when the results live where they can reach them (`PartSink`):
the driver only commits the entries the task returns.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from distsim.errors import StoreError
from distsim.runner.location import Location

ROWS_DIR = "rows"
COMMITS_DIR = f"{ROWS_DIR}/_commits"
PROBE_FILE = f"{ROWS_DIR}/_probe"
# Fold the commit log once it has this many objects.
FOLD_COMMITS = 256

Entry = dict[str, Any]


def new_token() -> str:
    """Unique per writer: time, pid and random bits (two runs in one second never collide)."""
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{secrets.token_hex(4)}"


def scenario_dir(scenario_id: str) -> str:
    return f"{ROWS_DIR}/scenario_id={quote(str(scenario_id), safe='')}"


def ranges(values: Iterable[int]) -> list[list[int]]:
    """Sorted integers as inclusive [lo, hi] runs: [0, 1, 2, 5] -> [[0, 2], [5, 5]]."""
    out: list[list[int]] = []
    for v in sorted(set(int(x) for x in values)):
        if out and v == out[-1][1] + 1:
            out[-1][1] = v
        else:
            out.append([v, v])
    return out


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, write_page_checksum=True)
    return sink.getvalue().to_pybytes()


def rows_table(rows: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pa.Table:
    """Rows as a table; of dicts, the union of their keys (rows of different architectures
    carry different pool columns; `from_pylist` would keep only the first row's)."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame.from_records(list(rows))
    frame = frame.reset_index(drop=True)
    for col in ("replication", "seed"):
        if col in frame.columns:
            frame[col] = frame[col].astype("int64")
    return pa.Table.from_pandas(frame, preserve_index=False)


def write_part(loc: Location, scenario_id: str, table: pa.Table, name: str) -> Entry:
    """Write one scenario's rows as `part-<name>.parquet` in its folder; the entry to commit."""
    path = f"{scenario_dir(scenario_id)}/part-{name}.parquet"
    data = parquet_bytes(table)
    loc.write_bytes(path, data)
    archs = table.column("architecture").to_pylist()
    reps = table.column("replication").to_pylist()
    keys: dict[str, list[int]] = {}
    for a, r in zip(archs, reps, strict=True):
        keys.setdefault(str(a), []).append(int(r))
    return {
        "path": path,
        "scenario_id": str(scenario_id),
        "rows": table.num_rows,
        "bytes": len(data),
        "keys": {a: ranges(v) for a, v in sorted(keys.items())},
    }


def write_parts(loc: Location, rows: pd.DataFrame, name: str) -> list[Entry]:
    """Rows of any scenarios: one part per scenario, named `<name>-<scenario id>`."""
    out = []
    for sid, group in rows.groupby("scenario_id", sort=True):
        out.append(write_part(loc, str(sid), rows_table(group), f"{name}-{sid}"))
    return out


# ---------------------------------------------------------------- the commit log


class CommitLog:
    """The commit log of one results folder (see the module docstring)."""

    def __init__(self, loc: Location) -> None:
        self.loc = loc

    def exists(self) -> bool:
        return bool(self.loc.listdir(COMMITS_DIR))

    def _read_all(self) -> dict[str, dict[str, Any]]:
        for _ in range(8):  # a commit folded away between listing and reading: list again
            names = [n for n, _ in self.loc.listdir(COMMITS_DIR) if n.endswith(".json")]
            commits: dict[str, dict[str, Any]] = {}
            try:
                for name in names:
                    commits[name.rsplit("/", 1)[-1]] = self._parse(name)
            except FileNotFoundError:
                continue
            return commits
        raise StoreError(f"{self.loc.where(COMMITS_DIR)}: changes too fast to read; try again")

    def _parse(self, name: str) -> dict[str, Any]:
        try:
            data = json.loads(self.loc.read_bytes(name))
            if not isinstance(data, dict) or not isinstance(data.get("add", []), list):
                raise ValueError("not a commit")
        except (ValueError, UnicodeDecodeError) as exc:
            raise StoreError(f"{self.loc.where(name)}: damaged commit ({exc})") from None
        return data

    def state(self) -> tuple[list[Entry], set[str]]:
        """The entries of every committed part that counts (one per path, in commit order), and
        the paths removed (a part merged into another, or set aside)."""
        commits = self._read_all()
        superseded = {s for c in commits.values() for s in c.get("supersedes", [])}
        removed = {p for c in commits.values() for p in c.get("remove", [])}
        out: dict[str, Entry] = {}
        for name in sorted(commits):
            if name in superseded:
                continue
            for entry in commits[name].get("add", []):
                if entry["path"] not in removed:
                    out.setdefault(entry["path"], entry)
        return list(out.values()), removed

    def live(self) -> list[Entry]:
        return self.state()[0]

    def commit(
        self,
        add: Sequence[Entry] = (),
        remove: Sequence[str] = (),
        supersedes: Sequence[str] = (),
    ) -> str:
        """Write one commit object (the only way a part starts or stops counting)."""
        if not add and not remove:
            return ""
        body = {"add": list(add), "remove": list(remove), "supersedes": list(supersedes)}
        name = f"{time.time_ns():020d}-{new_token()}.json"
        self.loc.write_bytes(f"{COMMITS_DIR}/{name}", json.dumps(body).encode("utf-8"))
        return name

    def fold(self, *, force: bool = False) -> None:
        """Fold a long log into one commit, then delete the commits it replaces."""
        commits = self._read_all()
        if len(commits) < (2 if force else FOLD_COMMITS):
            return
        live, removed = self.state()
        self.commit(add=live, remove=sorted(removed), supersedes=sorted(commits))
        for name in commits:
            self.loc.delete(f"{COMMITS_DIR}/{name}")


def entry_keys(entries: Iterable[Entry]) -> pd.DataFrame:
    """The (scenario_id, architecture, replication) keys the entries hold, from the commit log
    alone (no part is read), deduplicated."""
    sids, archs, reps = [], [], []
    for e in entries:
        for arch, runs in e["keys"].items():
            for lo, hi in runs:
                n = hi - lo + 1
                sids += [e["scenario_id"]] * n
                archs += [arch] * n
                reps += range(lo, hi + 1)
    keys = pd.DataFrame({"scenario_id": sids, "architecture": archs, "replication": reps})
    keys["replication"] = keys["replication"].astype("int64")
    return keys.drop_duplicates().reset_index(drop=True)


def overlap(entries: Iterable[Entry]) -> bool:
    """Whether two of the entries hold the same (architecture, replication) key (the commit
    log alone: no part is read)."""
    seen: set[tuple[str, int]] = set()
    held = 0
    for e in entries:
        for arch, runs in e["keys"].items():
            for lo, hi in runs:
                held += hi - lo + 1
                seen.update((arch, r) for r in range(lo, hi + 1))
    return held > len(seen)


# ---------------------------------------------------------------- parts written by workers


@dataclass(frozen=True)
class PartSink:
    """Where a Ray task writes its own part files (picklable; the worker opens the location).

    `probe` is a token the driver wrote to `rows/_probe`: a worker that reads another token (a
    node that sees a different folder at the same path) writes nothing and sends its rows back
    to the driver instead, so a folder that is not shared never loses a row."""

    uri: str
    probe: str

    def location(self) -> Location | None:
        loc = Location.parse(self.uri)
        try:
            seen = loc.read_bytes(PROBE_FILE).decode("utf-8", "replace")
        except (FileNotFoundError, StoreError):
            return None
        return loc if seen == self.probe else None


def content_name(rows: Sequence[Mapping[str, Any]]) -> str:
    """A name for a task's parts: a hash of the keys it holds (the same for every retry of the
    task) and a token unique to this attempt (two attempts never write the same file)."""
    keys = sorted(
        (str(r["scenario_id"]), str(r["architecture"]), int(r["replication"])) for r in rows
    )
    digest = hashlib.sha256(repr(keys).encode("utf-8")).hexdigest()[:16]
    return f"w{digest}-{secrets.token_hex(4)}"


def sink_rows(sink: PartSink, rows: list[dict[str, Any]]) -> list[Entry] | None:
    """Write a task's rows where the sink says; the entries, or None to send the rows back."""
    if not rows:
        return []
    loc = sink.location()
    if loc is None:
        return None
    frame = pd.DataFrame.from_records(rows)
    return write_parts(loc, frame, content_name(rows))


def read_part(loc: Location, path: str) -> pa.Table:
    """One part as a table, page checksums verified (errors propagate to the caller)."""
    with loc.open_input(path) as f:
        data = f.read()
    return pq.read_table(io.BytesIO(data), page_checksum_verification=True)
