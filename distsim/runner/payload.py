"""The bounded per-replication summaries a worker adds to its row, beside the metrics.

- `ttft_sketch`, `e2e_sketch`: quantile sketches (`distsim.stats.sketch`, JSON text) of the
  measured requests' TTFT and end-to-end latency, so the driver pools quantiles over all
  replications and still has each replication's own.
- `ttft_profile`: TTFT sum and count by arrival-time bin over the whole run, warm-up included
  (`distsim.stats.diagnostics.TimeProfile`, JSON text), for MSER-5 warm-up detection and the trend
  check.

Their size depends on the spread of latencies and the number of time bins, never on the number
of requests (a few tens of kB per row before Parquet compression).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from distsim.stats.diagnostics import TimeProfile, profile_to_json
from distsim.stats.sketch import LogHistogram, to_json

if TYPE_CHECKING:  # the driver imports this module for the column names only
    from distsim.sim.replication import Replication

SKETCH_COLUMNS = {"ttft": "ttft_sketch", "e2e": "e2e_sketch"}
PROFILE_COLUMN = "ttft_profile"
PAYLOAD_COLUMNS = (*SKETCH_COLUMNS.values(), PROFILE_COLUMN)


def payload(rep: Replication, duration_s: float) -> dict[str, str]:
    """The payload columns of one replication of one architecture."""
    arrival = rep.requests.arrival_s
    ttft_all = rep.trace.first_token_s - arrival
    e2e = (rep.trace.done_s - arrival)[rep.measured]
    return {
        SKETCH_COLUMNS["ttft"]: to_json(LogHistogram.of(ttft_all[rep.measured])),
        SKETCH_COLUMNS["e2e"]: to_json(LogHistogram.of(e2e)),
        PROFILE_COLUMN: profile_to_json(TimeProfile.of(arrival, ttft_all, duration_s)),
    }
