"""The pure ranking-and-selection statistics (distsim.stats.selection) on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from distsim.stats import selection as rs


def settings(**changes) -> rs.Settings:
    base = dict(goal="minimize", indifference=0.05, confidence=0.95, n0=5, stage=1)
    return rs.Settings(**(base | changes))


def test_eta_and_h2_by_hand():
    # beta = 0.05, n0 = 10: (2 beta)^(-2/9) = 10^(2/9) = 1.668101; eta = 0.334050
    assert rs.eta(0.05, 10) == pytest.approx(0.5 * (10 ** (2 / 9) - 1), rel=1e-12)
    assert rs.eta(0.05, 10) == pytest.approx(0.334050, abs=1e-6)
    assert rs.h_squared(0.05, 10) == pytest.approx(2 * 0.334050 * 9, abs=1e-5)


def test_triangle_boundary_and_closing():
    # h2 S2 / (2 delta) - delta r / 2 = 6 * 0.01 / 0.2 - 0.1 r / 2 = 0.3 - 0.05 r
    assert rs.boundary(6, 0.01, 0.1, 2) == pytest.approx(0.2)
    assert rs.boundary(6, 0.01, 0.1, 6) == 0.0
    assert rs.closing_stage(6, 0.01, 0.1) == pytest.approx(6.0)


def test_relative_indifference_is_a_log_ratio():
    assert settings(indifference=0.02).delta == pytest.approx(math.log(1.02))
    z = rs.scores(np.array([1.0, math.e]), "minimize")
    assert z.tolist() == pytest.approx([0.0, -1.0])
    with pytest.raises(ValueError, match="positive"):
        rs.scores(np.array([1.0, 0.0]), "maximize")


def test_first_stage_is_asked_for_first():
    d = rs.replay({"a": np.ones(3), "b": np.ones(5)}, {"a": {}, "b": {}}, settings())
    assert not d.done and d.needs == {"a": 5}


def test_clear_loser_goes_at_the_first_look_and_is_exactly_twice_as_slow():
    # zero spread of the paired differences: the triangle is closed, the sign decides
    a, b = np.full(5, 1.0), np.full(5, 2.0)
    s = settings()
    d = rs.replay({"a": a, "b": b}, {"a": {}, "b": {}}, s)
    assert d.done and d.contenders == ["a"] and d.eliminated == {"b": ("a", 5)}
    ranking = rs.rank(d, {"a": a, "b": b}, s)
    assert [(r.architecture, r.status) for r in ranking] == [("a", "best"), ("b", "eliminated")]
    assert (ranking[1].rel_worse, ranking[1].rel_low, ranking[1].rel_high) == (1.0, 1.0, 1.0)


def test_identical_candidates_end_tied_with_a_zero_interval():
    x = np.array([1.0, 1.3, 0.9, 1.1, 1.2])
    s = settings()
    d = rs.replay({"a": x, "b": x.copy()}, {"a": {}, "b": {}}, s)
    assert d.done and d.contenders == ["a", "b"] and not d.eliminated
    ranking = rs.rank(d, {"a": x, "b": x.copy()}, s)
    assert [r.status for r in ranking] == ["best", "tied"]
    assert (ranking[1].rel_worse, ranking[1].rel_low, ranking[1].rel_high) == (0.0, 0.0, 0.0)


def test_a_noisy_close_pair_asks_for_one_more_stage():
    rng = np.random.default_rng(1)
    a = 1.0 + 0.1 * rng.standard_normal(5)
    b = a * 1.01 * np.exp(0.3 * rng.standard_normal(5))
    d = rs.replay({"a": a, "b": b}, {"a": {}, "b": {}}, settings())
    assert not d.done and d.needs == {"a": 6, "b": 6}


def test_feasibility_by_the_sign_when_the_metric_does_not_vary():
    s = settings(constraints=(rs.Constraint("slo_attainment", "at_least", 0.9),))
    obj = {"a": np.full(5, 2.0), "b": np.full(5, 1.0)}  # b is faster but misses the SLO
    cons = {"a": {"slo_attainment": np.full(5, 0.95)}, "b": {"slo_attainment": np.full(5, 0.85)}}
    d = rs.replay(obj, cons, s)
    assert d.done and d.contenders == ["a"] and d.infeasible == {"b": ("slo_attainment", 5)}
    assert d.feasible["a"] == ["slo_attainment"]
    ranking = rs.rank(d, obj, s)
    assert [(r.architecture, r.status) for r in ranking] == [("a", "best"), ("b", "infeasible")]


def test_an_undecided_candidate_cannot_eliminate_others():
    # b is far better but its constraint is still undecided: a must survive this look
    rng = np.random.default_rng(3)
    s = settings(constraints=(rs.Constraint("slo_attainment", "at_least", 0.9),))
    obj = {"a": np.full(5, 2.0), "b": np.full(5, 1.0)}
    noisy = 0.9 + 0.05 * rng.standard_normal(5)
    cons = {"a": {"slo_attainment": np.full(5, 0.99)}, "b": {"slo_attainment": noisy}}
    d = rs.replay(obj, cons, s)
    assert not d.done and "a" in d.contenders and "b" in d.contenders


def test_the_cap_stops_and_says_so():
    rng = np.random.default_rng(2)
    a = 1.0 + 0.2 * rng.standard_normal(10)
    b = a * 1.001 + 0.2 * rng.standard_normal(10)
    s = settings(max_replications=8, indifference=0.001)
    d = rs.replay({"a": np.abs(a) + 0.1, "b": np.abs(b) + 0.1}, {"a": {}, "b": {}}, s)
    assert d.done and d.capped and d.stage == 8


def test_candidates_generator_names_and_fields():
    from distsim.spec.selection import Candidates, expand_candidates

    plain = expand_candidates(Candidates.model_validate({"disaggregated_splits": {"gpus": 8}}))
    assert list(plain) == ["d17", "d26", "d35", "d44", "d53", "d62", "d71"]
    assert plain["d35"] == {"kind": "disaggregated", "prefill_gpus": 3, "decode_gpus": 5}
    many = expand_candidates(Candidates.model_validate({"disaggregated_splits": {
        "gpus": 12, "tensor_parallel": [1, 2], "monolithic": True,
        "template": {"max_batch_size": 64}}}))  # fmt: skip
    assert "d3_9_tp1" in many and "d2_10_tp2" in many and "d3_9_tp2" not in many
    assert many["d4_8_tp2"]["prefill_tensor_parallel"] == 2
    assert many["m12_tp2"] == {"kind": "monolithic", "gpus": 12, "tensor_parallel": 2,
                               "max_batch_size": 64}  # fmt: skip
    assert all(a["max_batch_size"] == 64 for a in many.values())
