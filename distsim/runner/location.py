"""Where a results folder lives: a local path, a shared mount, or an object-store URI.

`--out` is either a path (`results/x`, `/mnt/shared/x`) or a URI that `pyarrow.fs` understands
(`s3://bucket/x`, `gs://bucket/x`, `file:///x`); every byte the store reads or writes goes
through the `pyarrow.fs.FileSystem` that `Location.parse` resolves it to. Credentials and
endpoints come from the usual environment of that filesystem (for S3: `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL` for an S3-compatible server).

The two kinds of filesystem differ in one way that matters here: a local folder renames
atomically, an object store does not (but writes a whole object or nothing). So a local write
goes to a temporary name, is flushed and renamed over the target (`store.atomic_write_bytes`),
and an object-store write is one single-object PUT; in both a reader sees the old object or the
new one, never half of one.

A `pathlib.Path` made from a URI collapses `s3://b/x` to `s3:/b/x`; `uri_of` undoes that, so
code that joins names onto `out_dir` with `/` (the report writer) works for both.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from distsim.errors import StoreError, first_line

_COLLAPSED = re.compile(r"^([a-z][a-z0-9+.-]*):/([^/].*)$")
_URI = re.compile(r"^[a-z][a-z0-9+.-]*://")
_BARE = re.compile(r"^([a-z][a-z0-9+.-]*):/?$")  # `s3://` collapsed to `s3:` or `s3:/`


def is_uri(out: str | Path) -> bool:
    """`out` names an object store or other non-local filesystem (not a plain path)."""
    text = uri_of(out)
    return bool(_URI.match(text)) and not text.startswith("file://")


def uri_of(out: str | Path) -> str:
    """The URI or path text of `out`, undoing pathlib's collapse of `scheme://` to `scheme:/`."""
    text = str(out)
    bare = _BARE.match(text)
    if bare and not Path(text).exists():  # a scheme with nothing after it, not a local folder
        return f"{bare.group(1)}://"
    m = _COLLAPSED.match(text)
    if m and not Path(text).exists():
        if m.group(1) == "file":  # file:///abs/path collapsed to file:/abs/path
            return f"file:///{m.group(2)}"
        return f"{m.group(1)}://{m.group(2)}"
    return text


@dataclass(frozen=True)
class Location:
    """A folder on some filesystem: `fs` and the folder's path inside it (`root`)."""

    fs: pafs.FileSystem
    root: str
    uri: str  # as given (with any query, e.g. ?endpoint_override=...): workers parse it again

    @property
    def local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @classmethod
    def parse(cls, out: str | Path) -> Location:
        """Resolve `--out`: a one-line `StoreError` for a URI no filesystem understands."""
        text = uri_of(out)
        if not is_uri(text):
            local = Path(text.removeprefix("file://")).absolute()
            return cls(pafs.LocalFileSystem(), local.as_posix(), str(local))
        try:
            fs, root = pafs.FileSystem.from_uri(text)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise StoreError(f"--out {text}: not a usable location ({first_line(exc)})") from None
        root = root.rstrip("/")
        if not root or "/" not in root and isinstance(fs, pafs.S3FileSystem | pafs.GcsFileSystem):
            raise StoreError(f"--out {text}: give a folder inside the bucket (s3://bucket/folder)")
        return cls(fs, root, text)

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def where(self, rel: str = "") -> str:
        """How messages name a file: the local path or the URI (without its query)."""
        base = self.uri.split("?", 1)[0].rstrip("/")
        return f"{base}/{rel}" if rel else base

    # ------------------------------------------------------------ queries

    def exists(self, rel: str = "") -> bool:
        return self._info(rel).type != pafs.FileType.NotFound

    def is_file(self, rel: str) -> bool:
        return self._info(rel).type == pafs.FileType.File

    def size(self, rel: str) -> int | None:
        info = self._info(rel)
        return info.size if info.type == pafs.FileType.File else None

    def _info(self, rel: str) -> pafs.FileInfo:
        try:
            return self.fs.get_file_info(self.path(rel))
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"{self.where(rel)}: cannot read: {first_line(exc)}") from None

    def listdir(self, rel: str, *, recursive: bool = False) -> list[tuple[str, int]]:
        """(path relative to the folder, size) of every file under `rel`; [] when absent."""
        base = self.path(rel)
        selector = pafs.FileSelector(base, recursive=recursive, allow_not_found=True)
        try:
            infos = self.fs.get_file_info(selector)
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"{self.where(rel)}: cannot list: {first_line(exc)}") from None
        prefix = len(self.root) + 1
        return sorted((i.path[prefix:], i.size or 0) for i in infos if i.type == pafs.FileType.File)

    # ------------------------------------------------------------ reading and writing

    def read_bytes(self, rel: str) -> bytes:
        try:
            with self.fs.open_input_stream(self.path(rel)) as f:
                return f.read()
        except FileNotFoundError:
            raise
        except (OSError, pa.ArrowException) as exc:
            if not self.exists(rel):
                raise FileNotFoundError(self.where(rel)) from None
            raise StoreError(f"{self.where(rel)}: cannot read: {first_line(exc)}") from None

    def open_input(self, rel: str) -> Any:
        """A random-access file for Parquet readers (caller closes)."""
        return self.fs.open_input_file(self.path(rel))

    def _write_local(self, rel: str, data: bytes | Iterable[bytes]) -> None:
        from distsim.runner.rowfiles import _atomic_write_local

        target = Path(self.path(rel))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{target.parent}: cannot create: {exc.strerror}") from None
        _atomic_write_local(target, data)

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Whole or nothing (see the module docstring); a one-line `StoreError` on failure."""
        if self.local:
            self._write_local(rel, data)
            return
        try:
            with self.fs.open_output_stream(self.path(rel)) as f:
                f.write(data)
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"{self.where(rel)}: cannot write: {first_line(exc)}") from None

    def write_chunks(self, rel: str, chunks: Iterable[bytes]) -> None:
        """`write_bytes` for data produced a piece at a time, never whole in memory: locally
        through a temporary file; on an object store as a temporary object renamed (copied
        server-side) once complete, so a failure part-way leaves the old object."""
        if self.local:
            self._write_local(rel, chunks)
            return
        parent, _, name = rel.rpartition("/")
        tmp = f"{parent + '/' if parent else ''}.{name}.tmp-{os.getpid()}"
        try:
            out = self.fs.open_output_stream(self.path(tmp))
            try:
                for chunk in chunks:
                    out.write(chunk)
            finally:
                out.close()
            self.move(tmp, rel)
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"{self.where(rel)}: cannot write: {first_line(exc)}") from None
        finally:
            with contextlib.suppress(OSError, StoreError, pa.ArrowException):
                self.delete(tmp)

    def delete(self, rel: str) -> None:
        """Remove one file; absent is fine."""
        self._remove(rel, self.fs.delete_file)

    def move(self, rel: str, to_rel: str) -> None:
        """Rename (local: atomic; object store: copy, then delete the original)."""
        try:
            self.fs.move(self.path(rel), self.path(to_rel))
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"{self.where(rel)}: cannot rename: {first_line(exc)}") from None

    def delete_dir(self, rel: str) -> None:
        """Remove a folder and what it holds; absent is fine."""
        self._remove(rel, self.fs.delete_dir)

    def _remove(self, rel: str, remove: Callable[[str], None]) -> None:
        """`remove(path)`; absent is fine, any other failure of something still there is a
        one-line StoreError."""
        with contextlib.suppress(FileNotFoundError):
            try:
                remove(self.path(rel))
            except FileNotFoundError:
                raise
            except (OSError, pa.ArrowException) as exc:
                if self.exists(rel):
                    raise StoreError(
                        f"{self.where(rel)}: cannot delete: {first_line(exc)}"
                    ) from None

    def check_writable(self) -> None:
        """Fail in one line, before anything is written, when the folder's bucket (object store)
        does not exist or cannot be reached. A local folder is created by the caller."""
        if self.local:
            return
        bucket = PurePosixPath(self.root).parts[0]
        try:
            info = self.fs.get_file_info(bucket)
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"--out {self.where()}: cannot reach it ({first_line(exc)})") from None
        if info.type == pafs.FileType.NotFound:
            raise StoreError(f"--out {self.where()}: no bucket {bucket!r} (create it first)")
