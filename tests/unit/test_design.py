"""The study design: sweep/scenario expansion, scenario ids, common random numbers, batching and
the basic statistics — all without Ray."""

from __future__ import annotations

import math

import numpy as np
import pytest
from distsim_testkit import study_dict
from scipy import stats as sps

from distsim.errors import SpecError
from distsim.runner.execute import TASKS_PER_CPU, batch_units
from distsim.runner.plan import MAX_SCENARIOS, plan_study, scenario_id
from distsim.runner.task import Unit, run_batch, run_unit
from distsim.sim.replication import simulate
from distsim.spec.study import validate_study
from distsim.stats import compare as stats

RATE = "workload.arrival.rate_rps"
PREFILL = "architectures.disaggregated.prefill_gpus"
DECODE = "architectures.disaggregated.decode_gpus"


def plan_of(**changes):
    return plan_study(validate_study(study_dict(**changes)))


def one_line_error(**changes) -> str:
    with pytest.raises(SpecError) as info:
        plan_of(**changes)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- expansion


def test_no_sweep_is_the_study_itself():
    plan = plan_of()
    assert len(plan.scenarios) == 1
    assert plan.param_paths == ()
    assert plan.scenarios[0].scenario == validate_study(study_dict()).scenario()


def test_grid_is_the_cartesian_product_in_spec_order():
    plan = plan_of(sweep={RATE: [1.0, 2.0, 4.0], PREFILL: [1, 3]})
    assert plan.param_paths == (RATE, PREFILL)
    got = [(s.params[RATE], s.params[PREFILL]) for s in plan.scenarios]
    assert got == [(1.0, 1), (1.0, 3), (2.0, 1), (2.0, 3), (4.0, 1), (4.0, 3)]
    for s in plan.scenarios:  # the value really reached the scenario that will be simulated
        assert s.scenario.workload.arrival.rate_rps == s.params[RATE]
        assert s.scenario.architectures["disaggregated"].prefill_gpus == s.params[PREFILL]
    assert plan.units == 6 * 3 and plan.rows == 6 * 3 * 2


def test_explicit_points():
    points = [{PREFILL: 1, DECODE: 3}, {PREFILL: 3, DECODE: 1}]
    plan = plan_of(scenarios=points)
    assert plan.param_paths == (PREFILL, DECODE)
    splits = [
        (s.scenario.architectures["disaggregated"].prefill_gpus,
         s.scenario.architectures["disaggregated"].decode_gpus)
        for s in plan.scenarios
    ]  # fmt: skip
    assert splits == [(1, 3), (3, 1)]


def test_explicit_points_are_crossed_with_the_grid():
    points = [{PREFILL: 1, DECODE: 3}, {PREFILL: 3, DECODE: 1}]
    plan = plan_of(scenarios=points, sweep={RATE: [1.0, 2.0, 4.0]})
    assert len(plan.scenarios) == 6
    assert plan.param_paths == (RATE, PREFILL, DECODE)
    combos = {(s.params[PREFILL], s.params[DECODE], s.params[RATE]) for s in plan.scenarios}
    assert combos == {(p, d, r) for p, d in [(1, 3), (3, 1)] for r in (1.0, 2.0, 4.0)}
    assert len({s.id for s in plan.scenarios}) == 6


def test_whole_subtree_can_be_swept():
    gamma = {"process": "gamma", "rate_rps": 2.0, "cv": 2.0}
    plan = plan_of(sweep={"workload.arrival": [gamma]})
    assert plan.scenarios[0].scenario.workload.arrival.cv == 2.0
    assert isinstance(plan.scenarios[0].params["workload.arrival"], str)  # JSON text column


# ---------------------------------------------------------------- ids


def test_scenario_id_ignores_study_level_settings():
    base = plan_of().scenarios[0].id
    assert plan_of(name="other", replications=50, confidence=0.9).scenarios[0].id == base
    assert plan_of(baseline="disaggregated").scenarios[0].id == base


def test_scenario_id_changes_with_anything_simulated():
    base = plan_of().scenarios[0].id
    changed = [
        plan_of(seed=8),
        plan_of(duration_s=61.0),
        plan_of(warmup_s=6.0),
        plan_of(gpu={"prefill_tokens_per_s": 8001, "decode_tokens_per_s": 2000}),
    ]
    ids = [p.scenarios[0].id for p in changed]
    assert base not in ids and len(set(ids)) == len(ids)


def test_scenario_id_is_stable_across_spellings():
    a = validate_study(study_dict(duration_s=60)).scenario()
    b = validate_study(study_dict(duration_s=60.0)).scenario()
    data = study_dict()
    data["architectures"] = dict(reversed(list(data["architectures"].items())))
    c = validate_study(data).scenario()
    assert scenario_id(a) == scenario_id(b) == scenario_id(c)
    assert len(scenario_id(a)) == 10 and int(scenario_id(a), 16) >= 0


def test_swept_point_equal_to_the_base_has_the_base_id():
    base = plan_of().scenarios[0].id
    plan = plan_of(sweep={RATE: [1.0, 2.0]})  # 2.0 is the base study's rate
    assert [s.id for s in plan.scenarios].count(base) == 1


# ---------------------------------------------------------------- errors


def test_bad_sweep_path_names_the_path():
    msg = one_line_error(sweep={"workload.arrival.rat_rps": [1.0]})
    assert msg.startswith("sweep.workload.arrival.rat_rps: ")


def test_bad_explicit_path_names_the_point():
    msg = one_line_error(scenarios=[{PREFILL: 1}, {"architectures.disagregated.decode_gpus": 1}])
    assert msg.startswith("scenarios[1].architectures.disagregated.decode_gpus: ")


def test_bad_sweep_value_names_the_path_and_value():
    msg = one_line_error(sweep={RATE: [1.0, -2.0]})
    assert msg.startswith(f"sweep.{RATE}: value -2.0: ")
    assert "greater than 0" in msg


def test_bad_explicit_value_names_the_path():
    msg = one_line_error(scenarios=[{PREFILL: 0}])
    assert msg.startswith(f"scenarios[0].{PREFILL}: value 0: ")


def test_invalid_combination_names_the_point():
    msg = one_line_error(sweep={"duration_s": [3.0]})  # shorter than warmup_s = 5
    assert "duration_s=3.0" in msg and "warmup_s" in msg


def test_study_level_fields_cannot_be_swept():
    assert one_line_error(sweep={"replications": [2, 3]}).startswith("sweep.replications: ")
    assert one_line_error(scenarios=[{"name": "x"}]).startswith("scenarios[0].name: ")


def test_path_in_both_sweep_and_points_is_an_error():
    msg = one_line_error(sweep={RATE: [1.0]}, scenarios=[{RATE: 2.0}])
    assert msg.startswith(f"scenarios[0].{RATE}: ")


def test_duplicate_scenarios_are_an_error():
    assert "same scenario" in one_line_error(sweep={RATE: [2, 2.0]})


def test_empty_sweep_list_and_non_list_are_errors():
    with pytest.raises(SpecError, match="needs at least one value"):
        validate_study(study_dict(sweep={RATE: []}))
    with pytest.raises(SpecError, match=r"sweep\.workload\.arrival\.rate_rps"):
        validate_study(study_dict(sweep={RATE: 3.0}))


def test_huge_sweep_is_refused_before_expansion():
    side = math.isqrt(MAX_SCENARIOS) + 1
    msg = one_line_error(sweep={RATE: list(range(1, side + 1)), "seed": list(range(side))})
    assert "limit" in msg


def test_renaming_an_architecture_in_a_sweep_is_an_error():
    mono = {"kind": "monolithic", "gpus": 4}
    msg = one_line_error(sweep={"architectures": [{"a": mono, "monolithic": mono}]})
    assert "architectures" in msg


# ---------------------------------------------------------------- common random numbers


def test_both_architectures_see_the_same_requests(monkeypatch):
    import distsim.runner.task as task

    seen: dict[str, object] = {}
    real = task.simulate_requests

    def spy(scenario, arch, replication, requests):
        seen[arch] = requests
        return real(scenario, arch, replication, requests)

    monkeypatch.setattr(task, "simulate_requests", spy)
    plan = plan_of()
    ps = plan.scenarios[0]
    out = run_unit(ps.scenario, Unit(ps.id, 4, plan.architectures))
    assert not out.errors
    a, b = seen["monolithic"], seen["disaggregated"]
    assert len(a) > 50
    for field in ("arrival_s", "prompt_tokens", "output_tokens"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_unit_rows_equal_independent_single_replications():
    """Each row equals `simulate(scenario, arch, r)`, which draws its own workload from
    (seed, r): so the shared workload is exactly replication r's, for every architecture."""
    plan = plan_of(sweep={PREFILL: [1, 3]})
    for ps in plan.scenarios:
        out = run_batch({ps.id: ps.scenario}, [Unit(ps.id, r, plan.architectures) for r in (0, 5)])
        assert len(out.rows) == 4 and not out.errors
        for row in out.rows:
            alone = simulate(ps.scenario, row["architecture"], row["replication"]).result.flat()
            assert {k: row[k] for k in alone} == alone
            assert row["seed"] == ps.scenario.seed and row["scenario_id"] == ps.id


def test_replication_draws_do_not_depend_on_the_scenario():
    plan = plan_of(sweep={PREFILL: [1, 3]})
    a, b = (simulate(ps.scenario, "disaggregated", 2).requests for ps in plan.scenarios)
    np.testing.assert_array_equal(a.arrival_s, b.arrival_s)
    np.testing.assert_array_equal(a.prompt_tokens, b.prompt_tokens)
    c = simulate(plan.scenarios[0].scenario, "disaggregated", 3).requests
    assert not np.array_equal(a.prompt_tokens[:20], c.prompt_tokens[:20])


def test_a_raising_architecture_is_reported_and_the_rest_runs(monkeypatch):
    import distsim.runner.task as task

    real = task.simulate_requests

    def flaky(scenario, arch, replication, requests):
        if arch == "disaggregated" and replication == 1:
            raise RuntimeError("boom")
        return real(scenario, arch, replication, requests)

    monkeypatch.setattr(task, "simulate_requests", flaky)
    plan = plan_of()
    ps = plan.scenarios[0]
    out = run_batch({ps.id: ps.scenario}, [Unit(ps.id, r, plan.architectures) for r in range(3)])
    assert len(out.rows) == 5
    assert len(out.errors) == 1
    err = out.errors[0]
    assert (err["scenario_id"], err["architecture"], err["replication"], err["seed"]) == (
        ps.id, "disaggregated", 1, 7,
    )  # fmt: skip
    assert err["error"].startswith("RuntimeError: boom")


# ---------------------------------------------------------------- batching


@pytest.mark.parametrize("n_units,cpus", [(1, 2), (7, 1), (30, 2), (300, 2), (1000, 16)])
def test_batches_cover_every_unit_once_in_order(n_units, cpus):
    units = [Unit("s", r, ("a",)) for r in range(n_units)]
    batches = batch_units(units, lambda u: 1000.0, cpus)
    assert [u for b in batches for u in b] == units
    assert all(batches)
    assert len(batches) == min(n_units, max(TASKS_PER_CPU * cpus, 1))
    sizes = [len(b) for b in batches]
    assert max(sizes) - min(sizes) <= 1  # equal costs -> equal batches


def test_batches_split_by_cost():
    units = [Unit("big", r, ("a",)) for r in range(4)] + [
        Unit("small", r, ("a",)) for r in range(12)
    ]
    costs = {"big": 3000.0, "small": 1000.0}
    batches = batch_units(units, lambda u: costs[u.scenario_id], 1)
    loads = [sum(costs[u.scenario_id] for u in b) for b in batches]
    assert max(loads) <= 2 * min(loads)


# ---------------------------------------------------------------- basic statistics


def test_mean_interval_matches_the_t_formula():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0]) - 1.0  # a 0 among them: the plain t interval
    iv = stats.mean_interval(x, 0.95)
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)  # t(0.975, 4) * s / sqrt(n)
    assert iv.estimate == 2.0 and iv.n == 5
    assert iv.low == pytest.approx(2.0 - half, rel=1e-12)
    assert iv.high == pytest.approx(2.0 + half, rel=1e-12)


def test_mean_interval_drops_missing_and_handles_tiny_samples():
    iv = stats.mean_interval([2.0, np.nan, 2.0], 0.95)
    assert (iv.estimate, iv.low, iv.high, iv.n) == (2.0, 2.0, 2.0, 2)
    one = stats.mean_interval([1.5, np.nan], 0.95)
    assert one.estimate == 1.5 and one.n == 1 and math.isnan(one.low)


def test_identical_arms_are_no_difference_never_nan():
    x = np.array([0.3, 0.5, 0.4, 0.9])
    d = stats.paired_difference(x, x.copy(), 0.95)
    assert (d.diff, d.diff_low, d.diff_high, d.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert (d.rel_diff, d.rel_low, d.rel_high) == (0.0, 0.0, 0.0)
    assert d.significant is False and d.n == 4


def test_paired_difference_agrees_with_scipy_paired_t():
    rng = np.random.default_rng(3)
    base = rng.normal(0.0, 1.0, 12)  # values of both signs: a paired t on the difference
    other = base * 1.1 + rng.normal(0, 0.2, 12)
    d = stats.paired_difference(base, other, 0.95)
    ref = sps.ttest_rel(other, base)
    assert d.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    ci = ref.confidence_interval(0.95)
    assert (d.diff_low, d.diff_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert d.rel_diff == pytest.approx((other.mean() - base.mean()) / abs(base.mean()))
    assert d.rel_low < d.rel_diff < d.rel_high
    assert d.significant == (ref.pvalue < 0.05)


def test_paired_difference_drops_incomplete_pairs():
    base = np.array([1.0, 2.0, np.nan, 4.0])
    other = np.array([1.5, np.nan, 3.0, 6.0])
    d = stats.paired_difference(base, other, 0.95)
    assert d.n == 2 and d.diff == pytest.approx(1.25)
    assert d.p_value == 0.0 and d.significant  # a constant ratio (1.5) of positive values


def test_tiny_units_make_tasks_of_a_bounded_number_of_rows():
    """10^4 units of ~4 requests each: their cost alone would make 16 tasks of 625 units on 2
    CPUs; 10^5 would make 16 tasks of 6,250 units, whose rows all reach the driver at once."""
    from distsim.runner.execute import MAX_TASK_UNITS, task_count

    units = [Unit("s", r, ("a", "b")) for r in range(100_000)]
    batches = batch_units(units, lambda u: 4.0, 2)
    assert [u for b in batches for u in b] == units
    assert max(len(b) for b in batches) <= MAX_TASK_UNITS
    assert len(batches) == task_count(4.0 * len(units), len(units), 2) == 98
