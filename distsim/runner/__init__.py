"""Running a study: plan, tasks, Ray, the result store, aggregation, `run_study`.

`plan.py` expands a study into scenarios with stable ids; `task.py` simulates one batch of units
in a worker; `execute.py` is the only module that imports Ray; `store.py` the resumable Parquet
store (rows partitioned by scenario; `parts.py` its part files and commit log, `rowfiles.py` the
file-level reads and writes, `location.py` local folders and object-store URIs); `budget.py`
time and memory estimates; `aggregate.py`, `precision.py` and `warmup.py` apply `distsim.stats`
to a study's stored rows; `study.py` ties them together (`run_study`); `result.py` holds what it
returns (`StudyResult`).

Imports: everything below it (`spec`, `workload`, `sim` inside workers only, `stats`).
"""
