"""The requests of one replication: arrival times, prompt and output sizes, classes.

`generate.py` builds a replication's `Requests` from a workload spec and named random streams
(`streams.py`: one `SeedSequence` per (seed, replication, stream name), so every architecture of
a replication sees the same requests); `distributions.py` the token-size distributions and their
exact means; `trace_files.py` reads recorded trace and empirical-size CSV files; and
`characterize.py` describes a workload for `distsim workload`.

Imports: `distsim.spec` and `distsim.errors` only.
"""
