"""Statistics over replications: intervals, paired comparisons, sketches, diagnostics, goodput.

Pure functions of per-replication values and quantile sketches: `intervals.py` (confidence
intervals and paired tests), `compare.py` (the seam the runner calls: estimates and paired
differences from stored columns), `bootstrap.py`, `sketch.py` (bounded log-histograms for pooled
quantiles), `diagnostics.py` (warm-up detection, run-length checks, precision waves),
`goodput.py` (the highest rate meeting an SLO) and `cost.py` (price per hour, goodput per dollar
and per kWh).

Imports: `distsim.errors`, numerical libraries and `distsim.spec` (the GPUs' price and power);
nothing from the engines or the runner.
"""
