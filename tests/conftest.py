"""Test-session set-up; the shared helpers live in `distsim_testkit.py`."""

from __future__ import annotations

import os

# Ray in tests: loopback only and no usage reporting. Ray reads these when it is imported, so they
# are set here, before any test module imports it.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
