"""distsim: does disaggregated LLM serving beat monolithic for your workload, and how sure is that?

A study spec (YAML) expands into scenarios x architectures x seeded replications; each replication
is a pure simulation; the results become estimates with confidence intervals and paired tests.
"""

from distsim.errors import DistsimError, SimulationError, SpecError, StoreError
from distsim.simulate import Replication, simulate
from distsim.spec import Scenario, Study, load_study

__version__ = "0.1.0"

__all__ = [
    "DistsimError",
    "Replication",
    "Scenario",
    "SimulationError",
    "SpecError",
    "StoreError",
    "Study",
    "__version__",
    "load_study",
    "simulate",
]
