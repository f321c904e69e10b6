"""A sweep read over its swept parameters: axes, the verdict class of each comparison, the heat
map's cells (which are coloured, which hatched, which greyed as overloaded), the verdict per swept
value, and a bounded number of files whatever the scenario count.

The classification tests use hand-made comparison tables whose verdicts are known by construction
(no simulation); the file-count tests run the real report on real rows.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from distsim_testkit import RATE, make_study, study_dict

from distsim.report import sweep_plots
from distsim.report.sweeps import (
    ALONE,
    HIGHER,
    LOWER,
    NO_RESULT,
    NOT_SIGNIFICANT,
    NOT_TESTED,
    classify,
    heat_grid,
    sweep_axes,
    value_table,
)
from distsim.report.terminal import LARGE_SWEEP_SCENARIOS
from distsim.runner.plan import plan_study

PREFILL = "architectures.disaggregated.prefill_gpus"
DECODE = "architectures.disaggregated.decode_gpus"
SPLITS = [{PREFILL: p, DECODE: 4 - p} for p in (1, 2, 3)]


def split_plan(rates: list[float] = [3.0, 1.0, 2.0]):  # noqa: B006 (read only)
    """Rate x split of 4 GPUs (explicit points crossed with the rate sweep): 3 x 3 scenarios."""
    return plan_study(make_study(sweep={RATE: rates}, scenarios=SPLITS))


def row(sid: str, rel: float, *, sig: bool = False, p: float = 0.5, tested: bool = True,
        metric: str = "ttft_p99_s", arch: str = "disaggregated") -> dict:  # fmt: skip
    return {"scenario_id": sid, "architecture": arch, "baseline": "monolithic", "metric": metric,
            "rel_diff": rel, "rel_ci_low": rel - 0.1, "rel_ci_high": rel + 0.1,
            "p_value": p, "significant": sig, "tested": tested}  # fmt: skip


def test_paths_that_move_together_are_one_axis_in_numeric_order() -> None:
    plan = split_plan()
    axes, index = sweep_axes(plan)
    assert [ax.paths for ax in axes] == [(RATE,), (PREFILL, DECODE)]
    assert axes[0].values == ((1.0,), (2.0,), (3.0,))  # sorted, not spec order
    assert [axes[1].tick(i) for i in range(3)] == ["1/3", "2/2", "3/1"]
    assert axes[0].label() == "arrival rate (req/s)"
    assert axes[1].label() == "disaggregated prefill / decode (GPUs)"
    for ps in plan.scenarios:
        i, j = index[ps.id]
        assert axes[0].values[i] == (ps.params[RATE],)
        assert axes[1].values[j] == (ps.params[PREFILL], ps.params[DECODE])


def test_two_independent_paths_are_two_axes() -> None:
    plan = plan_study(make_study(sweep={RATE: [1.0, 2.0], "gpu.decode_tokens_per_s": [1000, 2000]}))
    axes, index = sweep_axes(plan)
    assert len(axes) == 2 and len(set(index.values())) == 4


def test_each_comparison_gets_its_verdict_class() -> None:
    d = pd.DataFrame([
        row("a", -0.3, sig=True, p=0.001),  # significant after adjustment, lower
        row("b", 0.4, sig=True, p=0.001),  # significant, higher
        row("c", 0.2, p=0.01),  # own p < alpha, not after adjustment
        row("d", 0.05, p=0.4),  # not significant
        row("e", 3.0, p=float("nan"), tested=False),  # overloaded: never called significant
        row("f", float("nan"), p=float("nan")),  # no result
    ])  # fmt: skip
    assert list(classify(d, 0.05)) == [LOWER, HIGHER, ALONE, NOT_SIGNIFICANT, NOT_TESTED,
                                       NO_RESULT]  # fmt: skip


def hand_made_grid_detail(plan) -> tuple[pd.DataFrame, dict[tuple[int, int], str]]:
    """Per (rate index, split index): a row of a known class."""
    axes, index = sweep_axes(plan)
    want = {
        (0, 0): LOWER, (1, 0): NOT_SIGNIFICANT, (2, 0): ALONE,
        (0, 1): HIGHER, (1, 1): HIGHER, (2, 1): NOT_TESTED,
        (0, 2): NOT_TESTED, (1, 2): ALONE,  # (2, 2): no comparison at all
    }  # fmt: skip
    make = {
        LOWER: lambda s: row(s, -0.5, sig=True, p=1e-4),
        HIGHER: lambda s: row(s, 1.5, sig=True, p=1e-4),
        ALONE: lambda s: row(s, 0.3, p=0.02),
        NOT_SIGNIFICANT: lambda s: row(s, -0.02, p=0.6),
        NOT_TESTED: lambda s: row(s, 40.0, p=float("nan"), tested=False),
    }
    by_cell = {idx: sid for sid, idx in index.items()}
    rows = [make[k](by_cell[cell]) for cell, k in want.items()]
    rows += [row(by_cell[cell], 9.0, sig=True, p=0, metric="ttft_mean_s") for cell in want]
    return pd.DataFrame(rows), want


def test_heat_map_cells_coloured_hatched_and_greyed_by_verdict() -> None:
    plan = split_plan()
    detail, want = hand_made_grid_detail(plan)
    grid = heat_grid(plan, detail, "ttft_p99_s")
    assert grid is not None and grid.kind.shape == (1, 3, 3)  # panel, split (y), rate (x)
    for (x, y), kind in want.items():
        assert grid.kind[0, y, x] == kind
    assert grid.kind[0, 2, 2] == NO_RESULT and math.isnan(grid.rel[0, 2, 2])
    hatched = {(x, y) for y, x in zip(*np.nonzero(sweep_plots.hatched_cells(grid)[0]), strict=True)}
    assert hatched == {(1, 0), (2, 0), (1, 2)}  # not significant, alone, alone
    coloured = {(x, y) for y, x in zip(*np.nonzero(sweep_plots.coloured_cells(grid)[0]),
                                        strict=True)}  # fmt: skip
    # every tested comparison is coloured (hatching on top says "not significant"); overloaded
    # and missing cells are not
    assert coloured == {c for c, k in want.items() if k != NOT_TESTED}
    # the colour scale is set by the tested cells only: +150% -> log(2.5), not the overloaded +4000%
    assert sweep_plots.colour_limit(grid) == pytest.approx(math.log(2.5))
    # the hatching is one collection per shade with exactly the hatched cells
    assert len(sweep_plots._cells(sweep_plots.hatched_cells(grid)[0], "none", "///", "k")
               .get_paths()) == 3  # fmt: skip


def test_colour_ticks_are_spread_and_include_zero() -> None:
    for limit in (math.log(1.25), math.log(2.5), math.log(46.0)):
        ticks = sweep_plots.colour_ticks(limit)
        assert 0 in ticks and len(ticks) <= 9
        logs = [math.log1p(t / 100) for t in ticks]
        assert all(abs(v) <= limit * 1.0001 for v in logs)
        assert min(np.diff(logs)) >= 2 * limit / 8 * 0.999  # labels never crowd


def test_a_third_axis_makes_panels_and_the_cap_keeps_them_few() -> None:
    plan = plan_study(make_study(sweep={RATE: [1.0, 2.0], "gpu.decode_tokens_per_s": [1000, 2000,
                      3000]}, scenarios=SPLITS))  # fmt: skip
    axes, index = sweep_axes(plan)
    assert len(axes) == 3
    detail = pd.DataFrame([row(sid, 0.1) for sid in index])
    grid = heat_grid(plan, detail, "ttft_p99_s")
    assert grid.kind.shape == (3, 3, 2) and grid.panels_total == 3
    assert grid.panels[0] == "disaggregated prefill / decode 1/3 GPUs"
    capped = heat_grid(plan, detail, "ttft_p99_s", max_panels=2)
    assert capped.kind.shape[0] == 2 and capped.panels_total == 3
    assert heat_grid(plan_study(make_study(sweep={RATE: [1.0, 2.0]})), detail, "x") is None


def test_the_verdict_per_swept_value_counts_over_the_other_axis() -> None:
    plan = split_plan()
    detail, _ = hand_made_grid_detail(plan)
    table = value_table(plan, detail, ["ttft_p99_s"])
    cell = {(r["axis"], r["value"]): r[("disaggregated", "ttft_p99_s")]
            for r in table.to_dict("records")}  # fmt: skip
    rate, split = "arrival rate (req/s)", "disaggregated prefill / decode (GPUs)"
    assert cell[(rate, "1")] == "1 lower (faster) · 1 higher (slower) · 1 not tested (overloaded)"
    assert cell[(rate, "3")] == "1 n.s. after adj. · 1 not tested (overloaded)"  # 1 missing
    assert cell[(split, "3/1")] == "1 n.s. after adj. · 1 not tested (overloaded)"
    one = plan_study(make_study(sweep={RATE: [1.0, 2.0]}))
    sid = one.scenarios[1].id
    single = value_table(one, pd.DataFrame([row(sid, 0.25, sig=True, p=0.001)]), ["ttft_p99_s"])
    assert list(single[("disaggregated", "ttft_p99_s")]) == [
        "—",
        "+25% [+15%, +35%] higher (slower)",
    ]


def _files_of_report(tmp_path: Path, spec: dict) -> set[str]:
    from test_report_md import result_of

    from distsim.runner.study import write_report_files

    result = result_of(spec, tmp_path)
    write_report_files(result, tables=True)
    text = (tmp_path / "report.md").read_text()
    for name in {p.name for p in tmp_path.glob("*.png")}:
        assert f"({name})" in text  # every plot is shown in report.md
    # a large sweep: a section for each plotted scenario only (the rest are in the tables)
    n, cdfs = len(result.plan.scenarios), len(list(tmp_path.glob("cdf_*.png")))
    assert text.count("\n## Scenario `") == (n if n <= LARGE_SWEEP_SCENARIOS else cdfs)
    return {p.name for p in tmp_path.iterdir()}


def _bound() -> int:
    from distsim.report.markdown import MAX_DISTRIBUTION_PLOTS

    tables = 4  # report.md, summary.json, summary.csv, comparisons.csv
    return (
        1
        + MAX_DISTRIBUTION_PLOTS
        + len(sweep_plots.SWEEP_METRICS)
        + sweep_plots.MAX_HEATMAPS
        + tables
    )


@pytest.mark.parametrize(
    "sweep, points, n",
    [
        pytest.param({RATE: [1.0, 2.0]}, [], 2, marks=pytest.mark.slow),  # test_report_md: 3
        ({RATE: [1.0, 2.0]}, SPLITS[:2], 4),
    ],
    ids=["2 scenarios, one axis", "4 scenarios, two axes"],
)
def test_small_sweeps_files(tmp_path: Path, sweep: dict, points: list, n: int) -> None:
    spec = study_dict(replications=2, duration_s=30, warmup_s=3, sweep=sweep, scenarios=points)
    files = _files_of_report(tmp_path, spec)
    assert len(files) <= _bound()
    heat = {f for f in files if f.startswith("heatmap_")}
    assert heat == ({"heatmap_ttft_mean_s.png", "heatmap_ttft_p99_s.png"} if points else set())
    assert sum(f.startswith("sweep_") for f in files) == 4
    assert sum(f.startswith("cdf_") for f in files) == n


@pytest.mark.slow
def test_300_scenarios_write_as_many_files_as_a_small_sweep(tmp_path: Path) -> None:
    rates = [round(0.5 + 0.035 * i, 4) for i in range(100)]
    spec = study_dict(replications=2, duration_s=20, warmup_s=2, sweep={RATE: rates},
                      scenarios=SPLITS)  # fmt: skip
    files = _files_of_report(tmp_path, spec)
    assert len(files) <= _bound()
    assert {"heatmap_ttft_mean_s.png", "heatmap_ttft_p99_s.png", "forest.png"} <= files
    assert sum(f.startswith("cdf_") for f in files) <= 6
    text = (tmp_path / "report.md").read_text()
    assert text.count("\n## Scenario `") <= 6
    # the verdict per swept value: one row per rate and per split
    assert sum(line.startswith("| ") for line in text.splitlines()) < 100 + 3 + 2 * 6 * 30


def test_panels_are_thinned_per_axis_keeping_each_axis_spread() -> None:
    from distsim.report.sweeps import thin_product

    # 2 x 12 panels capped at 12: both values of the first axis stay (thinning the flattened
    # product every other panel would keep one of them only)
    kept = thin_product([2, 12], 12)
    assert kept[0] == [0, 1] and kept[1][0] == 0 and kept[1][-1] == 11 and len(kept[1]) == 6
    assert thin_product([3, 3, 3], 12) == [[0, 2], [0, 2], [0, 1, 2]]
    assert thin_product([4, 5], 100) == [[0, 1, 2, 3], [0, 1, 2, 3, 4]]
    for sizes in ([1, 10_000], [7, 7, 7], [12, 1, 13]):
        kept = thin_product(sizes, 12)
        assert 1 <= np.prod([len(k) for k in kept]) <= 12


def test_validate_prints_a_large_sweep_in_a_few_lines(tmp_path: Path) -> None:
    from distsim_testkit import invoke, write_spec

    rates = [round(0.5 + 0.1 * i, 3) for i in range(40)]
    spec = write_spec(tmp_path / "s.yaml", study_dict(sweep={RATE: rates}, scenarios=SPLITS))
    result = invoke("validate", spec)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "    arrival rate (req/s): 40 values, 0.5 ... 4.4" in out
    assert "    disaggregated prefill / decode (GPUs): 3 values, 1/3 ... 3/1" in out
    assert len(out.splitlines()) < 40  # 120 scenarios: one line each before
