"""distsim: does disaggregated LLM serving beat monolithic for your workload, and how sure is that?

A study spec (YAML) expands into scenarios x architectures x seeded replications; each replication
is a pure simulation; the results become estimates with confidence intervals and paired tests.

The package follows the data flow, and imports run one way down it:
`spec` (what a user writes) -> `workload` (the requests of one replication) -> `sim` (engines and
per-replication metrics) -> `stats` (intervals, tests, sketches) -> `runner` (plan, tasks, Ray,
store, run_study) -> `report` (terminal, markdown, plots) -> `cli`.
"""

import importlib

from distsim.errors import DistsimError, SimulationError, SpecError, StoreError
from distsim.spec.study import Scenario, Study, load_study

__version__ = "0.1.0"

# Imported on first use: the study runner pulls in pandas and pyarrow, which a Ray worker does not
# need; the simulation pulls in numba and the engines, which the driver of a Ray run does not need.
_LAZY = {
    "run_study": "distsim.runner.study",
    "StudyResult": "distsim.runner.result",
    "load_result": "distsim.runner.study",
    "Replication": "distsim.sim.replication",
    "simulate": "distsim.sim.replication",
}


def __getattr__(name: str) -> object:
    """Resolve the lazily imported public names (PEP 562)."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'distsim' has no attribute {name!r}")


__all__ = [
    "DistsimError",
    "Replication",
    "Scenario",
    "SimulationError",
    "SpecError",
    "StoreError",
    "Study",
    "StudyResult",
    "__version__",
    "load_result",
    "load_study",
    "run_study",
    "simulate",
]
