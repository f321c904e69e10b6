"""Reading request traces and size columns from CSV files: the I/O edge of trace workloads.

Two trace schemas are accepted, by their column names (extra columns are ignored):

- Azure LLM inference trace: ``TIMESTAMP`` (``YYYY-MM-DD HH:MM:SS.fffffff``), ``ContextTokens``
  (prompt tokens), ``GeneratedTokens`` (output tokens);
- generic: ``arrival_s`` (seconds, any origin), ``prompt_tokens``, ``output_tokens``.

Rules, the same for a trace and for an empirical size column:

- a row whose size cell is empty or not positive is *skipped and counted* (``n_skipped``); the
  count is shown by ``distsim workload`` and in the report, never dropped silently;
- a size that is not a whole number (``abc``, ``12.5``, ``inf``), an empty or unparseable
  timestamp, timestamps that go back in time (the trace must be sorted by arrival), an empty file
  or a file without usable rows are errors (`DataError`, one line naming the file and line).

Times are shifted so that the first kept request arrives at 0.

Loading happens once per process: `load_trace` and `load_column` cache the parsed arrays keyed by
(absolute path, modification time, size), so every replication a worker process runs reuses them
and an edited file is read again. Tasks carry the path, never the arrays.

On a Ray cluster a worker process on another node reads the file itself, so either the file is
readable at the same absolute path on every node (a shared filesystem, or the same copy placed by
the cluster's file mounts), or the driver ships the parsed data once: `snapshot(paths)` on the
driver, put in Ray's object store, and `install(snapshot)` in the task before generating; an
installed table takes precedence over the file system in that process.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from distsim.errors import DataError

if TYPE_CHECKING:  # pandas is imported where a file is read: a Ray worker may never need it
    import pandas as pd

AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
GENERIC_COLUMNS = ("arrival_s", "prompt_tokens", "output_tokens")
SCHEMAS = {"azure": AZURE_COLUMNS, "generic": GENERIC_COLUMNS}


@dataclass(frozen=True, eq=False)
class TraceTable:
    """A parsed trace: kept requests in arrival order, times in seconds from the first one."""

    path: str
    schema: str  # "azure" or "generic"
    arrival_s: np.ndarray  # float64, non-decreasing, arrival_s[0] == 0
    prompt_tokens: np.ndarray  # int64 >= 1
    output_tokens: np.ndarray  # int64 >= 1
    n_rows: int  # data rows in the file
    n_skipped: int  # rows skipped for a missing or non-positive size
    sha256: str  # of the file's bytes

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    @property
    def span_s(self) -> float:
        """Time from the first to the last kept arrival."""
        return float(self.arrival_s[-1])

    @property
    def mean_rate_rps(self) -> float:
        """Long-run arrival rate: one over the mean gap between consecutive arrivals."""
        return (len(self) - 1) / self.span_s


@dataclass(frozen=True, eq=False)
class SizeColumn:
    """One column of token counts, for an empirical size distribution."""

    path: str
    column: str
    values: np.ndarray  # int64 >= 1, in file order
    n_rows: int
    n_skipped: int
    sha256: str


# ---------------------------------------------------------------- parsing helpers


def _line(row: int) -> int:
    """File line of data row `row` (0-based), the header being line 1."""
    return row + 2


def _read_frame(path: str) -> tuple[pd.DataFrame, str]:
    """All cells as strings (nothing converted yet), and the file's SHA-256."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: no such file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not raw.strip():
        raise DataError(f"{path}: empty file (expected a CSV header and rows)")
    try:
        frame = pd.read_csv(
            p, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8"
        )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: not a readable CSV file: {first}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame, hashlib.sha256(raw).hexdigest()


def _sizes(frame: pd.DataFrame, column: str, path: str) -> tuple[np.ndarray, np.ndarray]:
    """(values as int64 with 0 where unusable, mask of usable rows) of one token-count column.

    Empty cells and values <= 0 are unusable (skipped and counted by the caller); anything else
    that is not a finite whole number is an error naming its line.
    """
    import pandas as pd

    text = frame[column].str.strip()
    empty = text.eq("").to_numpy()
    values = pd.to_numeric(text.where(~text.eq("")), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~empty & ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: line {_line(i)}: {column} '{frame[column].iloc[i]}' is not a number"
        )
    fractional = ~empty & (values != np.round(values))
    if fractional.any():
        i = int(np.flatnonzero(fractional)[0])
        raise DataError(
            f"{path}: line {_line(i)}: {column} '{frame[column].iloc[i]}' is not a whole "
            "number of tokens"
        )
    usable = ~empty & (values > 0)
    out = np.where(usable, values, 0.0)
    if out.max(initial=0.0) >= 2**53:
        i = int(np.argmax(out))
        raise DataError(f"{path}: line {_line(i)}: {column} {frame[column].iloc[i]} is too large")
    return out.astype(np.int64), usable


def _schema(frame: pd.DataFrame, path: str) -> str:
    """Which schema the header matches, or a one-line error naming the missing columns."""
    have = set(frame.columns)
    for name, cols in SCHEMAS.items():
        if have.issuperset(cols):
            return name
    # Name the missing columns of the schema the header comes closest to.
    best = max(SCHEMAS, key=lambda n: len(have.intersection(SCHEMAS[n])))
    cols = SCHEMAS[best]
    if not have.intersection(cols):
        found = ", ".join(frame.columns) or "none"
        raise DataError(
            f"{path}: not a trace: expected columns {', '.join(AZURE_COLUMNS)} (Azure) or "
            f"{', '.join(GENERIC_COLUMNS)} (generic); found {found}"
        )
    missing = ", ".join(c for c in cols if c not in have)
    raise DataError(
        f"{path}: missing column(s) {missing} (for the {best} schema: {', '.join(cols)})"
    )


def _times_s(frame: pd.DataFrame, schema: str, path: str) -> np.ndarray:
    """Arrival times in seconds (arbitrary origin), one per row."""
    import pandas as pd

    column = SCHEMAS[schema][0]
    text = frame[column].str.strip()
    empty = text.eq("").to_numpy()
    if empty.any():
        raise DataError(f"{path}: line {_line(int(np.flatnonzero(empty)[0]))}: {column} is empty")
    if schema == "azure":
        stamps = pd.to_datetime(text, format="ISO8601", errors="coerce")
        bad = stamps.isna().to_numpy()
        seconds = (stamps - stamps.min()).dt.total_seconds().to_numpy(dtype=np.float64)
    else:
        seconds = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(seconds)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: line {_line(i)}: {column} '{text.iloc[i]}' is not a valid time")
    back = np.flatnonzero(np.diff(seconds) < 0)
    if back.size:
        i = int(back[0]) + 1
        raise DataError(
            f"{path}: line {_line(i)}: {column} goes back in time "
            f"({seconds[i - 1] - seconds[i]:.6g} s before the previous row); "
            "sort the trace by arrival time"
        )
    return seconds


def _frozen(a: np.ndarray) -> np.ndarray:
    """A read-only array: cached data is shared by every replication of a process."""
    a.setflags(write=False)
    return a


def read_trace(path: str) -> TraceTable:
    """Parse a trace file (no cache). Raises `DataError` with one line on any problem."""
    frame, digest = _read_frame(path)
    schema = _schema(frame, path)
    if frame.shape[0] == 0:
        raise DataError(f"{path}: no data rows (only a header)")
    seconds = _times_s(frame, schema, path)
    prompt, ok_p = _sizes(frame, SCHEMAS[schema][1], path)
    output, ok_o = _sizes(frame, SCHEMAS[schema][2], path)
    keep = ok_p & ok_o
    n_rows = int(frame.shape[0])
    n_skipped = n_rows - int(keep.sum())
    if keep.sum() < 2:
        raise DataError(
            f"{path}: fewer than two usable requests ({n_skipped} of {n_rows} rows have a "
            "missing or non-positive size)"
        )
    t = seconds[keep]
    t = _frozen(t - t[0])
    if t[-1] <= 0:
        raise DataError(f"{path}: every request arrives at the same instant; no rate to take")
    return TraceTable(
        path=path,
        schema=schema,
        arrival_s=t,
        prompt_tokens=_frozen(prompt[keep]),
        output_tokens=_frozen(output[keep]),
        n_rows=n_rows,
        n_skipped=n_skipped,
        sha256=digest,
    )


def read_column(path: str, column: str) -> SizeColumn:
    """Parse one token-count column of a CSV file (no cache); `DataError` on any problem."""
    frame, digest = _read_frame(path)
    if column not in frame.columns:
        found = ", ".join(frame.columns) or "none"
        raise DataError(f"{path}: no column '{column}' (columns: {found})")
    if frame.shape[0] == 0:
        raise DataError(f"{path}: no data rows (only a header)")
    values, usable = _sizes(frame, column, path)
    n_rows = int(frame.shape[0])
    if not usable.any():
        raise DataError(f"{path}: column '{column}' has no positive token counts ({n_rows} rows)")
    return SizeColumn(
        path=path,
        column=column,
        values=_frozen(values[usable]),
        n_rows=n_rows,
        n_skipped=n_rows - int(usable.sum()),
        sha256=digest,
    )


# ---------------------------------------------------------------- once per process


def _stat_key(path: str) -> tuple[str, int, int]:
    """(absolute path, mtime in ns, size): a changed file gets a new cache entry."""
    absolute = os.path.abspath(path)
    try:
        st = os.stat(absolute)
    except OSError:
        return absolute, -1, -1  # parsing reports the missing file
    return absolute, st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=16)
def _cached_trace(key: tuple[str, int, int], shown: str) -> TraceTable:
    return read_trace(shown)


@functools.lru_cache(maxsize=64)
def _cached_column(key: tuple[str, int, int], shown: str, column: str) -> SizeColumn:
    return read_column(shown, column)


# Parsed data shipped by a driver (see `install`); keyed by absolute path (and column).
_INSTALLED: dict[tuple[str, str | None], TraceTable | SizeColumn] = {}


def load_trace(path: str) -> TraceTable:
    """`read_trace`, cached per process by (path, mtime, size). Do not mutate the arrays."""
    shipped = _INSTALLED.get((os.path.abspath(path), None))
    if isinstance(shipped, TraceTable):
        return shipped
    return _cached_trace(_stat_key(path), path)


def load_column(path: str, column: str) -> SizeColumn:
    """`read_column`, cached per process by (path, mtime, size, column)."""
    shipped = _INSTALLED.get((os.path.abspath(path), column))
    if isinstance(shipped, SizeColumn):
        return shipped
    return _cached_column(_stat_key(path), path, column)


Snapshot = dict[tuple[str, str | None], "TraceTable | SizeColumn"]


def snapshot(files: Iterable[tuple[str, str | None]]) -> Snapshot:
    """Parsed data of `files` ((path, None) for a trace, (path, column) for a column), for
    `install`; `workload.data_files` lists a workload's."""
    out: Snapshot = {}
    for path, column in files:
        key = (os.path.abspath(path), column)
        out[key] = load_trace(path) if column is None else load_column(path, column)
    return out


def install(data: Snapshot) -> None:
    """Make this process use shipped data for those paths instead of reading files (idempotent)."""
    _INSTALLED.update(data)


@contextlib.contextmanager
def installed(data: Snapshot | None) -> Iterator[None]:
    """Use shipped data for those paths while the block runs (a Ray task), then forget it, so
    a long-lived worker never serves one study's file to another."""
    before = dict(_INSTALLED)
    _INSTALLED.update(data or {})
    try:
        yield
    finally:
        _INSTALLED.clear()
        _INSTALLED.update(before)
