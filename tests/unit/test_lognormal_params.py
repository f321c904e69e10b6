"""Lognormal sizes by mu + sigma, mean + cv, or median + p90: converted exactly, stored once.

The truth is scipy.stats.lognorm's own moments and quantiles of the converted distribution; the
stored form is mu and sigma only, so a study written with the friendlier pair is the same scenario
(same id) as one written with the mu and sigma it converts to.
"""

from __future__ import annotations

import math

import pytest
import yaml
from distsim_testkit import study_dict
from scipy import stats
from typer.testing import CliRunner

from distsim.cli import app
from distsim.runner.plan import plan_study
from distsim.spec.study import Lognormal, validate_study


def _frozen(d: Lognormal):
    return stats.lognorm(s=d.sigma, scale=math.exp(d.mu))


@pytest.mark.parametrize("mean, cv", [(512.0, 1.0), (64.0, 0.25), (2000.0, 3.0), (10.0, 0.01)])
def test_mean_and_cv_give_that_mean_and_cv(mean: float, cv: float) -> None:
    d = Lognormal(dist="lognormal", mean=mean, cv=cv)
    ref = _frozen(d)
    assert ref.mean() == pytest.approx(mean, rel=1e-12)
    assert ref.std() / ref.mean() == pytest.approx(cv, rel=1e-10)


@pytest.mark.parametrize("median, p90", [(512.0, 1024.0), (64.0, 65.0), (100.0, 5000.0)])
def test_median_and_p90_give_that_median_and_p90(median: float, p90: float) -> None:
    d = Lognormal(dist="lognormal", median=median, p90=p90)
    ref = _frozen(d)
    assert ref.median() == pytest.approx(median, rel=1e-12)
    assert ref.ppf(0.9) == pytest.approx(p90, rel=1e-12)


def test_only_mu_and_sigma_are_stored() -> None:
    plain = Lognormal(dist="lognormal", mu=6.0, sigma=0.9, min=8)
    assert plain.model_dump() == {
        "min": 8,
        "max": None,
        "dist": "lognormal",
        "mu": 6.0,
        "sigma": 0.9,
    }
    friendly = Lognormal(dist="lognormal", mean=512.0, cv=1.0)
    assert set(friendly.model_dump()) == {"min", "max", "dist", "mu", "sigma"}


def test_the_friendly_pair_is_the_same_scenario_as_its_mu_and_sigma() -> None:
    friendly = study_dict()
    friendly["workload"]["prompt_tokens"] = {"dist": "lognormal", "median": 400.0, "p90": 1200.0}
    d = validate_study(friendly).workload.prompt_tokens
    plain = study_dict()
    plain["workload"]["prompt_tokens"] = {"dist": "lognormal", "mu": d.mu, "sigma": d.sigma}
    a = plan_study(validate_study(friendly)).scenarios[0].id
    b = plan_study(validate_study(plain)).scenarios[0].id
    assert a == b


BAD = [
    ({"mu": 6.0, "sigma": 1.0, "mean": 500.0, "cv": 1.0},
     "give exactly one of mu + sigma, mean + cv, median + p90 (got mu + sigma and mean + cv)"),
    ({"mean": 500.0}, "cv is missing (give mean + cv)"),
    ({"mu": 6.0}, "sigma is missing (give mu + sigma)"),
    ({}, "give exactly one of mu + sigma, mean + cv, median + p90"),
    ({"median": 500.0, "p90": 400.0}, "p90 (400) must be greater than median (500)"),
]  # fmt: skip


@pytest.mark.parametrize("params, message", BAD)
def test_a_wrong_parametrisation_is_one_line(tmp_path, params: dict, message: str) -> None:
    data = study_dict()
    data["workload"]["prompt_tokens"] = {"dist": "lognormal", **params}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"error: workload.prompt_tokens: {message}"


def test_a_sweep_of_mean_keeps_cv_and_labels_the_scenarios_with_the_swept_mean() -> None:
    data = study_dict()
    data["workload"]["prompt_tokens"] = {"dist": "lognormal", "mean": 500.0, "cv": 1.5}
    data["sweep"] = {"workload.prompt_tokens.mean": [250.0, 1000.0]}
    plan = plan_study(validate_study(data))
    assert [ps.params["workload.prompt_tokens.mean"] for ps in plan.scenarios] == [250.0, 1000.0]
    for ps, mean in zip(plan.scenarios, [250.0, 1000.0], strict=True):
        ref = _frozen(ps.scenario.workload.prompt_tokens)
        assert ref.mean() == pytest.approx(mean, rel=1e-12)
        assert ref.std() / ref.mean() == pytest.approx(1.5, rel=1e-9)


def test_set_p90_of_a_mu_sigma_lognormal_keeps_its_median(tmp_path) -> None:
    from distsim.spec.study import apply_overrides

    study = validate_study(study_dict())
    d = study.workload.output_tokens
    changed = apply_overrides(study, {"workload.output_tokens.p90": 2000.0})
    ref = _frozen(changed.workload.output_tokens)
    assert ref.median() == pytest.approx(math.exp(d.mu), rel=1e-12)
    assert ref.ppf(0.9) == pytest.approx(2000.0, rel=1e-12)
