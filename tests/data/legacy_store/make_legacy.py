"""Writes `folder/`: a results folder in the layout before rows/ (issue 14), with the code of
that time, for tests/runner/test_store_legacy.py.

    git archive e6d0ff6 | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python tests/data/legacy_store/make_legacy.py

The study is `tiny_study("legacy", replications=3)` (two scenarios x two architectures). Its
rows are simulated in process (`run_batch`, no Ray) and stored as a run of that code left them:
replications 0-1 consolidated into replications.parquet, replication 2 of both scenarios in
kept.parquet (a later run with --replications 2 moved them there), and the first scenario's
replication 2 also in a part file (a run killed before it cleaned up its parts).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # tests/, for distsim_testkit

from distsim_testkit import tiny_study  # noqa: E402

from distsim.runner.plan import plan_study  # noqa: E402
from distsim.runner.store import ResultStore  # noqa: E402
from distsim.runner.task import Unit, run_batch  # noqa: E402
from distsim.spec.study import validate_study  # noqa: E402


def main() -> None:
    study = validate_study(tiny_study("legacy", replications=3))
    plan = plan_study(study)
    units = [Unit(ps.id, r, plan.architectures) for ps in plan.scenarios for r in range(3)]
    rows = run_batch({ps.id: ps.scenario for ps in plan.scenarios}, units).rows
    out = HERE / "folder"
    shutil.rmtree(out, ignore_errors=True)
    with ResultStore.open(out) as store:
        store.write_spec(study.model_dump(mode="json"))
        store.append(rows)
        two = plan_study(validate_study(tiny_study("legacy", replications=2)))
        store.consolidate(two)  # replications 0-1 published, replication 2 kept
        first = plan.scenarios[0].id
        store.append([r for r in rows if r["scenario_id"] == first and r["replication"] == 2])
    (out / ".lock").unlink()
    print(sorted(p.name for p in out.rglob("*") if p.is_file()))


if __name__ == "__main__":
    main()
