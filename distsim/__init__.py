"""distsim: does disaggregated LLM serving beat monolithic for your workload, and how sure is that?

A study spec (YAML) expands into scenarios x architectures x seeded replications; each replication
is a pure simulation; the results become estimates with confidence intervals and paired tests.
"""

from distsim.errors import DistsimError, SimulationError, SpecError, StoreError
from distsim.simulate import Replication, simulate
from distsim.spec import Scenario, Study, load_study

__version__ = "0.1.0"

_LAZY = {name: "distsim.study" for name in ("run_study", "StudyResult", "load_result")}


def __getattr__(name: str) -> object:
    """`run_study`, `StudyResult`, `load_result`: imported on first use (they pull in pandas and
    pyarrow, which a Ray worker running one task does not need)."""
    if name in _LAZY:
        import importlib

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
