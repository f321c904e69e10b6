"""Data files travel with the study: scenario ids name a trace or empirical-size file by its
content (SHA-256), not its path, so the same study with its data elsewhere has the same ids and
its stored rows are found; rows stored under the old path-based ids are adopted. (The shipping
of the parsed files through Ray's object store is shown in `test_runner.py`, on two nodes.)
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from distsim_testkit import study_dict

from distsim.runner.plan import legacy_scenario_id, plan_study
from distsim.runner.store import ResultStore, read_rows
from distsim.spec.study import validate_study


def write_trace(path: Path, n: int = 3000, seed: int = 1) -> Path:
    """A generic-schema trace: Poisson arrivals at ~5 rps, lognormal sizes."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "arrival_s": np.cumsum(rng.exponential(0.2, n)),
            "prompt_tokens": rng.lognormal(6.0, 0.5, n).astype(int) + 1,
            "output_tokens": rng.lognormal(5.0, 0.5, n).astype(int) + 1,
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def trace_study(path: Path, **changes) -> dict:
    base = {"name": "trace", "duration_s": 60.0, "warmup_s": 5.0, "replications": 2,
            "workload": {"trace": {"path": str(path), "mode": "window"}}}  # fmt: skip
    return study_dict(**(base | changes))


def ids(spec: dict) -> list[str]:
    return [ps.id for ps in plan_study(validate_study(spec)).scenarios]


def test_ids_name_data_files_by_content_not_path(tmp_path):
    a = write_trace(tmp_path / "a" / "trace.csv")
    b = tmp_path / "elsewhere" / "renamed.csv"
    b.parent.mkdir()
    shutil.copy(a, b)
    assert ids(trace_study(a)) == ids(trace_study(b))  # moved: same scenario
    c = write_trace(tmp_path / "c" / "trace.csv", seed=2)
    assert ids(trace_study(c)) != ids(trace_study(a))  # other content: another scenario
    # An empirical size column, too.
    sizes = {"dist": "empirical", "path": str(a), "column": "prompt_tokens"}
    moved = {"dist": "empirical", "path": str(b), "column": "prompt_tokens"}
    wl = {"arrival": {"process": "poisson", "rate_rps": 2.0},
          "output_tokens": {"dist": "constant", "value": 50}}  # fmt: skip
    one = study_dict(workload={**wl, "prompt_tokens": sizes})
    two = study_dict(workload={**wl, "prompt_tokens": moved})
    assert ids(one) == ids(two)
    # A workload without data files keeps its id (and has no legacy id).
    plain = plan_study(validate_study(study_dict()))
    assert plain.scenarios[0].legacy_id is None and plain.id_aliases == {}


def test_the_id_hashes_the_sha256_of_the_file_bytes(tmp_path):
    path = write_trace(tmp_path / "t.csv")
    plan = plan_study(validate_study(trace_study(path)))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()  # independent of distsim's reader
    scenario = plan.scenarios[0].scenario
    from distsim.runner.plan import MODEL_VERSION, _dump_for_id, _hash

    dumped = _dump_for_id(scenario)
    dumped["workload"]["trace"]["path"] = f"sha256:{digest}"
    assert plan.scenarios[0].id == _hash({"model_version": MODEL_VERSION, "scenario": dumped})


def test_rows_stored_under_the_old_path_based_ids_are_adopted(tmp_path):
    path = write_trace(tmp_path / "data" / "t.csv")
    plan = plan_study(validate_study(trace_study(path)))
    ps = plan.scenarios[0]
    old = legacy_scenario_id(ps.scenario)
    assert old is not None and old != ps.id and plan.id_aliases == {old: ps.id}
    rows = [{"scenario_id": old, "architecture": a, "replication": r, "seed": 7,
             "n_requests": 10, "ttft_mean_s": 0.1 + r}
            for r in range(2) for a in plan.architectures]  # fmt: skip
    out = tmp_path / "out"
    with ResultStore.open(out) as store:
        store.append(rows)
        store.consolidate(plan)
        published = store.plan_rows(plan)
    assert len(published) == 4 and set(published["scenario_id"]) == {ps.id}
    assert not (out / "kept.parquet").exists()
    back, _, _ = read_rows(out)
    assert set(back["scenario_id"]) == {ps.id}
