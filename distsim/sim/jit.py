"""How distsim compiles its kernels: numba's `njit`, cached on disk when possible.

Compiling the kernels is slow and loading them from numba's on-disk cache is fast (figures:
benchmarks/README.md; benchmarks/bench_engine.py prints them). So every process —
the CLI, each Ray worker, each CI job after the first — pays the compile once per machine and
source version, not once per process. numba writes the cache next to the source
(`__pycache__`), or, when that directory is read-only (a system-wide install), in its per-user
cache directory; `NUMBA_CACHE_DIR` overrides both. Where nothing is writable the kernels are
compiled in memory in each process instead of failing.

numba checks a cached function against its own source file only, yet the cached machine code
includes the compiled functions it calls, which may live in other modules (the batched kernel is
split over several). So the cache stamp here also covers every module of the function's package
folder: editing any of them recompiles that folder's kernels instead of loading stale callees.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import numba

F = TypeVar("F", bound=Callable[..., Any])


def njit(fn: F) -> F:
    """`numba.njit` with an on-disk cache when a cache location is writable; no fast-math, so
    float results are bit-identical to the same operations done by numpy or Python."""
    return _compile(fn, inline="never")


def njit_inline(fn: F) -> F:
    """`njit`, and inlined into its callers by numba itself: for the steps a long kernel is split
    into (numba's calls pass every array field by value and LLVM does not inline them, which
    costs more than a step of the event loop's own work)."""
    return _compile(fn, inline="always")


def _compile(fn: F, inline: str) -> F:
    try:
        compiled = numba.njit(cache=True, nogil=True, inline=inline)(fn)
    except RuntimeError:  # numba found no writable cache location
        return numba.njit(nogil=True, inline=inline)(fn)  # type: ignore[no-any-return]
    _stamp_with_folder(compiled, Path(inspect.getfile(fn)).parent)
    return compiled  # type: ignore[no-any-return]


@cache
def _folder_stamp(folder: Path) -> str:
    """A hash of every module in `folder` (read once per process)."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _stamp_with_folder(compiled: Any, folder: Path) -> None:
    """Make the function's cache stamp cover its whole folder (see the module docstring). The
    stamp lives on numba's private cache-file object; if a numba version moves it, caching
    falls back to numba's own per-file check."""
    cache_file = getattr(getattr(compiled, "_cache", None), "_cache_file", None)
    if cache_file is not None and hasattr(cache_file, "_source_stamp"):
        cache_file._source_stamp = (cache_file._source_stamp, _folder_stamp(folder))
