"""The advisory lease of a results folder on an object store (which has no lock).

A run writes `_lease.json` (its owner token, host, pid and time), renews it as it commits, and
deletes it when it closes; another run refuses the folder while a lease younger than `LEASE_S`
is held by someone else (a lease of a dead process on this host is stale at once). Correctness
never rests on it: every part and commit is a new, uniquely named object (`store`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from typing import Any

from distsim.errors import StoreError
from distsim.runner.location import Location

LEASE_FILE = "_lease.json"
LEASE_S = 300.0  # an object-store lease older than this is stale (its run died)


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError):
        return False
    return True


class Lease:
    """One run's lease on the folder at `loc` (a no-op on a local folder: flock guards it)."""

    def __init__(self, loc: Location, token: str) -> None:
        self.loc = loc
        self.token = token
        self._at = 0.0  # when it was last written (monotonic); 0: not held

    def _body(self) -> bytes:
        body = {"owner": self.token, "host": socket.gethostname(), "pid": os.getpid(),
                "time": time.time()}  # fmt: skip
        return json.dumps(body).encode("utf-8")

    def take(self) -> None:
        """Take the lease, or a one-line `StoreError` while another run holds a live one."""
        try:
            held = json.loads(self.loc.read_bytes(LEASE_FILE))
        except (FileNotFoundError, ValueError, StoreError):
            held = None
        if isinstance(held, dict) and held.get("owner") != self.token:
            age = time.time() - float(held.get("time", 0))
            mine = held.get("host") == socket.gethostname() and not _alive(held.get("pid"))
            if age < LEASE_S and not mine:
                raise StoreError(
                    f"{self.loc.where()}: another distsim run is using this folder (lease of "
                    f"{held.get('host')} pid {held.get('pid')}, renewed {age:.0f} s ago; it "
                    f"lapses after {LEASE_S:.0f} s without renewal)"
                )
        self.loc.write_bytes(LEASE_FILE, self._body())
        self._at = time.monotonic()

    def renew(self) -> None:
        """Write it again when a fifth of `LEASE_S` has passed (cheap to call often)."""
        if not self.loc.local and time.monotonic() - self._at > LEASE_S / 5:
            self.loc.write_bytes(LEASE_FILE, self._body())
            self._at = time.monotonic()

    def release(self) -> None:
        """Delete it if it is still ours."""
        if not self.loc.local and self._at:
            with contextlib.suppress(StoreError, OSError, ValueError):
                held = json.loads(self.loc.read_bytes(LEASE_FILE))
                if held.get("owner") == self.token:
                    self.loc.delete(LEASE_FILE)
            self._at = 0.0
