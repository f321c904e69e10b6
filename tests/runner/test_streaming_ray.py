"""A study's aggregation fanned out over Ray tasks (`streaming.aggregate_store` with the run's
session) gives exactly the tables `distsim report` computes in the driver alone."""

from __future__ import annotations

import pandas as pd
import pytest
from distsim_testkit import tiny_study

from distsim.runner import execute, streaming
from distsim.runner.study import load_result, run_study


@pytest.mark.slow
def test_a_run_fanned_out_over_ray_equals_the_driver_alone(ray_session, tmp_path, monkeypatch):
    monkeypatch.setattr(streaming, "FAN_OUT_SCENARIOS", 2)
    monkeypatch.setattr(streaming, "GROUP_SCENARIOS", 1)  # several chunks (group_size: 1)
    calls: list[int] = []
    real = execute.RaySession.map_tasks

    def spy(self, fn, shared, items):
        calls.append(len(items))
        yield from real(self, fn, shared, items)

    monkeypatch.setattr(execute.RaySession, "map_tasks", spy)
    spec = tiny_study(rates=(2.0, 4.0, 6.0), replications=4)
    result = run_study(spec, out_dir=tmp_path, progress=False)
    assert calls == [3]  # 3 chunks of one scenario, on the session's 2 CPUs
    alone = load_result(tmp_path)
    for a, b in ((result.summary, alone.summary), (result.comparisons, alone.comparisons)):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert pd.read_csv(tmp_path / "summary.csv").shape[0] == len(alone.summary)
