"""distsim: does disaggregated LLM serving beat monolithic for your workload, and how sure is that?

A study spec (YAML) expands into scenarios x architectures x seeded replications; each replication
is a pure simulation; the results become estimates with confidence intervals and paired tests.
"""

import sys
import types
from typing import Any

from distsim.errors import DistsimError, SimulationError, SpecError, StoreError
from distsim.spec import Scenario, Study, load_study

__version__ = "0.1.0"

_LAZY = {name: "distsim.study" for name in ("run_study", "StudyResult", "load_result")}
_LAZY["Replication"] = "distsim.simulate"


def __getattr__(name: str) -> object:
    """`run_study`, `StudyResult`, `load_result`, `Replication`: imported on first use (the
    study runner pulls in pandas and pyarrow, which a Ray worker does not need; the simulation
    pulls in numba and the engines, which the driver of a Ray run does not need)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'distsim' has no attribute {name!r}")


class _Package(types.ModuleType):
    """`distsim.simulate` is the function `distsim.simulate.simulate`, imported on first use.

    The name is also the submodule's: importing the submodule makes the import system bind it
    on the package, which the setter ignores, so `distsim.simulate` stays the function."""

    @property
    def simulate(self) -> Any:
        from distsim.simulate import simulate

        return simulate

    @simulate.setter
    def simulate(self, value: Any) -> None:
        pass


sys.modules[__name__].__class__ = _Package


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
