"""The terminal summary of a large sweep counts what was done: a comparison in an overloaded
scenario is "not tested", never "no significant difference"."""

from __future__ import annotations

import pandas as pd
from distsim_testkit import make_study

from distsim.report.terminal import sweep_lines
from distsim.runner.plan import plan_study


def test_untested_comparisons_are_counted_apart() -> None:
    study = make_study(sweep={"workload.arrival.rate_rps": [1.0, 2.0, 3.0]})
    plan = plan_study(study)
    ids = [ps.id for ps in plan.scenarios]
    rows = [  # hand-made: lower and significant / not significant / overloaded, not tested
        (ids[0], -0.30, -0.40, -0.20, True, True),
        (ids[1], -0.05, -0.20, 0.10, False, True),
        (ids[2], 0.50, 0.10, 0.90, False, False),
    ]
    comparisons = pd.DataFrame(
        [
            {
                "scenario_id": sid,
                "architecture": "disaggregated",
                "metric": "ttft_p99_s",
                "rel_diff": rel,
                "rel_ci_low": lo,
                "rel_ci_high": hi,
                "significant": sig,
                "tested": tested,
            }
            for sid, rel, lo, hi, sig, tested in rows
        ]
    )
    lines = sweep_lines(plan, comparisons)
    head = next(line for line in lines if "significantly lower in" in line)
    assert head.endswith(
        "significantly lower in 1, higher in 0, no significant difference in 1, "
        "not tested (overloaded) in 1 of 3 scenarios"
    )
    # The verdict per swept value: one scenario per rate, so each row is that scenario's verdict.
    rows_by_rate = {line.split()[0]: line for line in lines if line.startswith("  ")}
    assert "-30% [-40%, -20%] lower (faster)" in rows_by_rate["1"]
    assert "-5.0% [-20%, +10%] n.s." in rows_by_rate["2"]
    assert "+50% [+10%, +90%] not tested (overloaded)" in rows_by_rate["3"]
    assert sum("not tested (overloaded)" in line for line in lines if line.startswith("  ")) == 1
