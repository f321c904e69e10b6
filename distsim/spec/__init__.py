"""What a user writes: the study models, their serving and hardware sections, presets, loading.

`study.py` holds the study and scenario models, YAML loading and `--set` overrides; `serving.py`
the batched engine's sections (model, GPU, step time, SLO, goodput); `hardware.py` the GPU and
model presets and the arithmetic that turns them into token rates.

Imports: `distsim.errors` and, for reading the data files a spec names, `distsim.workload`'s
file readers. Nothing here imports an engine, the runner or the statistics.
"""
