"""What a user writes: the study models, their workload, serving and hardware sections, loading.

`study.py` holds the study and scenario models, YAML loading, `--set` overrides and the one-line
error messages; `workload.py` the workload section (arrivals, size distributions, traces, mixes);
`serving.py` the serving sections (model, GPU, step time, SLO, goodput); `hardware.py` the GPU and
model presets and the arithmetic that turns them into token rates; `selection.py` the `select`
and `candidates` sections; `base.py` the strict base model and constrained number types.

Imports: `distsim.errors` and, for reading the data files a spec names, `distsim.workload`'s
file readers. Nothing here imports an engine, the runner or the statistics: what an engine needs
beyond each field (`distsim.sim.serving.check`) is checked by the runner's plan.
"""
