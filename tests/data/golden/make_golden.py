"""Write the golden rows: every row `run_batch` produces for a few shipped studies (shortened).

First run with the code from before the package layout moved (commit 0079beb) to freeze what
users' studies produced then; rerun when a model fix deliberately changes results (see
tests/runner/test_golden_rows.py):  `python tests/data/golden/make_golden.py OUT.parquet`.
`tests/runner/test_golden_rows.py` recomputes the same rows with today's code and compares.
"""

from __future__ import annotations

import importlib
import sys

import pandas as pd

# (study file, overrides, replications): short runs, so the test is quick
CASES = [
    ("studies/default.yaml", {"duration_s": 60.0, "warmup_s": 10.0}, 3),
    ("studies/seed_summary.yaml", {"duration_s": 60.0, "warmup_s": 10.0}, 2),
    ("studies/distserve.yaml", {"duration_s": 30.0, "warmup_s": 5.0}, 2),
    ("studies/azure_code_batched.yaml", {"duration_s": 60.0, "warmup_s": 10.0}, 2),
]


def _mod(*names: str):
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError(names)


def rows() -> pd.DataFrame:
    spec = _mod("distsim.spec.study", "distsim.spec")
    plan_mod = _mod("distsim.runner.plan", "distsim.design")
    task = _mod("distsim.runner.task", "distsim.task")
    frames = []
    for path, overrides, reps in CASES:
        study = spec.load_study(path, overrides)
        plan = plan_mod.plan_study(study)
        scenarios = {ps.id: ps.scenario for ps in plan.scenarios}
        units = [
            task.Unit(sid, r, tuple(sc.architectures))
            for sid, sc in scenarios.items()
            for r in range(reps)
        ]
        result = task.run_batch(scenarios, units)
        assert not result.errors, result.errors
        frame = pd.DataFrame(result.rows)
        frame.insert(0, "study", path)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


if __name__ == "__main__":
    rows().to_parquet(sys.argv[1], index=False)
