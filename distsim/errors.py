"""The few exceptions distsim raises on purpose.

Every user-facing problem is a `DistsimError`; the CLI turns one into a single line on stderr and
exit code 2. Anything else escaping is a bug.
"""

from __future__ import annotations


class DistsimError(Exception):
    """Base of every error distsim reports to a user as one line."""


class SpecError(DistsimError):
    """A study spec (file, YAML or field values) is invalid.

    The message names the field by its dotted path, e.g. ``workload.arrival.rate_rps: ...``.
    """


class DataError(DistsimError, ValueError):
    """A data file the spec points at (a trace, an empirical size column) is missing or malformed.

    Also a ValueError, so that raised inside a spec validator pydantic reports it at the field
    that named the file, e.g. ``workload.trace.path: ...``.
    """


class StoreError(DistsimError):
    """Results on disk cannot be read or written."""


class SimulationError(DistsimError):
    """A replication failed while simulating; the message names scenario, architecture and seed."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when the message is empty), for
    one-line reports of errors raised by libraries (pyarrow, Ray, the OS)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
