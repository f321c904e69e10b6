"""Helpers shared by the test modules: small studies built from plain dicts, as a user writes them.

Imported by name (`from distsim_testkit import study_dict`): `tests/` is on pytest's path, and the
name is one no installed package uses.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from distsim.sim.replication import simulate_requests
from distsim.spec.study import Scenario, Study
from distsim.stats.sketch import LogHistogram
from distsim.workload.generate import generate

BASE_STUDY: dict[str, Any] = {
    "name": "test",
    "seed": 7,
    "duration_s": 60.0,
    "warmup_s": 5.0,
    "workload": {
        "arrival": {"process": "poisson", "rate_rps": 2.0},
        "prompt_tokens": {"dist": "lognormal", "mu": 6.0, "sigma": 0.9, "min": 8},
        "output_tokens": {"dist": "lognormal", "mu": 6.0, "sigma": 1.1, "min": 16},
    },
    "gpu": {"prefill_tokens_per_s": 8000, "decode_tokens_per_s": 2000},
    "architectures": {
        "monolithic": {"kind": "monolithic", "gpus": 4},
        "disaggregated": {"kind": "disaggregated", "prefill_gpus": 2, "decode_gpus": 2},
    },
    "baseline": "monolithic",
    "replications": 3,
}


def study_dict(**changes: Any) -> dict[str, Any]:
    """A copy of the base study with top-level keys replaced."""
    data = copy.deepcopy(BASE_STUDY)
    data.update(copy.deepcopy(changes))
    return data


def make_study(**changes: Any) -> Study:
    return Study.model_validate(study_dict(**changes))


def make_scenario(**changes: Any) -> Scenario:
    return make_study(**changes).scenario()


AZURE_DATA = Path(__file__).resolve().parents[1] / "studies" / "data" / "azure-llm-2023"
AZURE_CODE = AZURE_DATA / "AzureLLMInferenceTrace_code.csv"


def mix_workload(weights: tuple[float, float] = (3.0, 1.0)) -> dict:
    return {
        "arrival": {"process": "poisson", "rate_rps": 20.0},
        "mix": [
            {
                "name": "chat",
                "weight": weights[0],
                "prompt_tokens": {"dist": "constant", "value": 100},
                "output_tokens": {"dist": "exponential", "mean": 300},
            },
            {
                "name": "code",
                "weight": weights[1],
                "prompt_tokens": {"dist": "uniform", "low": 1000, "high": 3000},
                "output_tokens": {"dist": "constant", "value": 20},
            },
        ],
    }


def sketches(scenario: Scenario, replications: int) -> dict[str, list[LogHistogram]]:
    """Architecture -> one TTFT sketch per replication (architectures share each workload)."""
    out: dict[str, list[LogHistogram]] = {name: [] for name in scenario.architectures}
    for r in range(replications):
        requests = generate(scenario.workload, scenario.duration_s, scenario.seed, r)
        for name in scenario.architectures:
            out[name].append(LogHistogram.of(simulate_requests(scenario, name, r, requests).ttft_s))
    return out
