"""How distsim compiles its kernels: numba's `njit`, cached on disk when possible.

Compiling the exclusive-engine kernels takes about a second (benchmarks/bench_engine.py prints
it); loading them from numba's on-disk cache takes a few tens of milliseconds. So every process —
the CLI, each Ray worker, each CI job after the first — pays the compile once per machine and
source version, not once per process. numba writes the cache next to the source
(`__pycache__`), or, when that directory is read-only (a system-wide install), in its per-user
cache directory; `NUMBA_CACHE_DIR` overrides both. Where nothing is writable the kernels are
compiled in memory in each process instead of failing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numba

F = TypeVar("F", bound=Callable[..., Any])


def njit(fn: F) -> F:
    """`numba.njit` with an on-disk cache when a cache location is writable; no fast-math, so
    float results are bit-identical to the same operations done by numpy or Python."""
    try:
        return numba.njit(cache=True, nogil=True)(fn)  # type: ignore[no-any-return]
    except RuntimeError:  # numba found no writable cache location
        return numba.njit(nogil=True)(fn)  # type: ignore[no-any-return]
