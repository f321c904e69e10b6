"""System models: given a replication's requests, when does each one get its tokens.

`replication.py` is the entry point (`simulate`): one scenario x architecture x replication ->
per-replication metrics (`metrics.py`). Engines: `simpy_exclusive.py` (the seed's model in SimPy,
the reference) and `fast_exclusive.py` (its compiled twin); `batched_simpy.py` and
`fast_batched.py` (continuous batching, KV cache, chunked prefill; compiled from
`batched_layout.py`, `batched_primitives.py` and `batched_kernel.py`) behind `batched.py`.
`serving.py` turns a spec's serving sections into an engine configuration, `step_time.py` holds
the step-time models, `timeline.py` what an engine returns, `jit.py` how kernels compile.

Imports: `distsim.spec`, `distsim.workload`, `distsim.errors`. Pure: no I/O, no globals.
"""

from typing import Literal

# Every engine has two implementations giving the same results bit for bit: "fast" (compiled with
# numba, the default: `fast_exclusive.py`, `fast_batched.py`) and "simpy" (the readable reference
# models: `simpy_exclusive.py`, `batched_simpy.py`), kept selectable for checking and benchmarks
# (tests/engines/).
Implementation = Literal["fast", "simpy"]
