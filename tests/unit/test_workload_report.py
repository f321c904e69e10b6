"""Workloads in the study outputs, without Ray: per-class TTFT rows in summary.csv add up to the
overall counts, and the report shows each scenario's workload characterisation."""

from __future__ import annotations

import pandas as pd
from distsim_testkit import AZURE_CODE as CODE
from distsim_testkit import make_study, mix_workload

from distsim.report.terminal import metric_label, render
from distsim.runner.plan import plan_study
from distsim.runner.result import workload_lines
from distsim.runner.study import aggregate_rows
from distsim.runner.task import Unit, run_unit


def _run(study) -> tuple:
    plan = plan_study(study)
    rows = []
    for ps in plan.scenarios:
        for r in range(plan.replications):
            out = run_unit(ps.scenario, Unit(ps.id, r, plan.architectures))
            assert not out.errors, out.errors
            rows += out.rows
    frame = pd.DataFrame(rows)
    for path in plan.param_paths:  # swept values as columns, as the store publishes them
        frame[path] = frame["scenario_id"].map({ps.id: ps.params[path] for ps in plan.scenarios})
    return plan, frame


def test_per_class_summary_rows_add_up_and_the_report_shows_the_workload() -> None:
    workload = mix_workload()
    workload["arrival"]["rate_rps"] = 2.0
    study = make_study(workload=workload, replications=3)
    plan, rows = _run(study)
    for _, row in rows.iterrows():
        assert row["n_requests_class_chat"] + row["n_requests_class_code"] == row["n_requests"]
    summary, _, detail = aggregate_rows(rows, plan)
    est = summary.set_index(["architecture", "metric"])["estimate"]
    for arch in plan.architectures:
        total = est[(arch, "n_requests_class_chat")] + est[(arch, "n_requests_class_code")]
        assert total == est[(arch, "n_requests")]
        assert (arch, "ttft_p99_s_class_code") in est.index
    text = render(plan, summary, detail, workloads=workload_lines(plan))
    assert "workload asked: 2 req/s, gap CV 1" in text
    assert "shares chat 0.750, code 0.250" in text
    assert "P99 TTFT (class code)" in text
    assert metric_label("n_requests_class_chat") == "measured requests (class chat)"


def test_replay_report_says_intervals_are_not_meaningful() -> None:
    study = make_study(
        workload={"trace": {"path": str(CODE), "mode": "replay"}}, duration_s=120.0, warmup_s=10.0
    )
    lines = workload_lines(plan_study(study))
    (only,) = lines.values()
    assert any("intervals across replications are not meaningful" in line for line in only)
    assert any("8819 rows, 0 skipped" in line for line in only)


def test_the_report_characterises_a_bounded_number_of_requests(monkeypatch) -> None:
    """The terminal report's workload lines generate requests in the driver: replications are
    taken while they fit CHARACTERIZE_MAX_REQUESTS (2 req/s here), none beyond it."""
    import distsim.runner.result as st
    import distsim.workload.characterize as ch

    asked: list[int] = []
    monkeypatch.setattr(ch, "characterize", lambda scenario, n: asked.append(n) or None)
    monkeypatch.setattr(ch, "summary_lines", lambda c: ["characterised"])
    limit = st.CHARACTERIZE_MAX_REQUESTS
    for duration_s, expected in [
        (60.0, 30),  # 120 requests a replication: all 30
        (limit / 2 / 2, 2),  # limit / 2 requests a replication: 2 fit
        (limit / 2 * 0.99, 1),
    ]:
        asked.clear()
        plan = plan_study(make_study(duration_s=duration_s, warmup_s=0.0, replications=40))
        assert list(workload_lines(plan).values()) == [["characterised"]]
        assert asked == [expected], duration_s
    asked.clear()
    plan = plan_study(make_study(duration_s=limit / 2 * 1.5, warmup_s=0.0, replications=40))
    (lines,) = workload_lines(plan).values()
    assert asked == [] and lines[0].startswith("not characterised here: one replication is ~")
