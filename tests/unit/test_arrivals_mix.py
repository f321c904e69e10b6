"""Arrival processes (gamma renewal), mixtures of request classes and empirical size columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from distsim_testkit import make_scenario, mix_workload
from scipy import stats

from distsim.sim.replication import simulate
from distsim.spec.study import Empirical, GammaArrival, PoissonArrival, Workload
from distsim.workload import streams as rngs
from distsim.workload.characterize import asked_stats, characterize, simulated_stats
from distsim.workload.distributions import rounded_mean, sample
from distsim.workload.generate import arrival_times, expected_means, generate

LOGN = {"dist": "lognormal", "mu": 6.0, "sigma": 0.9, "min": 8}


def _gaps(arrival, duration_s: float, seed: int = 3) -> np.ndarray:
    t = arrival_times(arrival, duration_s, rngs.stream(seed, 0, rngs.ARRIVALS))
    return np.diff(np.concatenate(([0.0], t)))


@pytest.mark.parametrize("cv", [0.5, 3.0])
def test_gamma_arrivals_have_the_requested_rate_and_cv(cv: float) -> None:
    rate, duration_s = 4.0, 20_000.0
    gaps = _gaps(GammaArrival(process="gamma", rate_rps=rate, cv=cv), duration_s)
    n = gaps.size
    # mean gap 1/rate: its standard error is cv/(rate sqrt(n))
    assert abs(gaps.mean() - 1 / rate) < 5 * cv / (rate * np.sqrt(n))
    # sample CV: for gamma gaps (shape k = 1/cv^2, excess kurtosis 6/k) the relative standard
    # error of the sample variance is sqrt((2 + 6/k) / n); that of the std is half of it.
    rel_se_sd = 0.5 * np.sqrt((2 + 6 * cv**2) / n)
    measured_cv = gaps.std() / gaps.mean()
    assert abs(measured_cv / cv - 1) < 5 * rel_se_sd + 5 / np.sqrt(n)


def test_gamma_with_cv_one_is_poisson() -> None:
    rate = 2.5
    gamma = _gaps(GammaArrival(process="gamma", rate_rps=rate, cv=1.0), 8000.0, seed=1)
    poisson = _gaps(PoissonArrival(process="poisson", rate_rps=rate), 8000.0, seed=2)
    assert stats.kstest(gamma, "expon", args=(0, 1 / rate)).pvalue > 0.001
    assert stats.ks_2samp(gamma, poisson).pvalue > 0.001
    # ... and the test can tell: cv 1.5 gaps are not exponential
    bursty = _gaps(GammaArrival(process="gamma", rate_rps=rate, cv=1.5), 8000.0, seed=1)
    assert stats.kstest(bursty, "expon", args=(0, 1 / rate)).pvalue < 1e-6


# ---------------------------------------------------------------- mixtures


def test_mixture_class_shares_match_the_weights() -> None:
    workload = Workload.model_validate(mix_workload())
    req = generate(workload, 600.0, seed=8, replication=0)
    n = len(req)
    assert req.class_names == ("chat", "code")
    counts = np.bincount(req.class_id, minlength=2)
    assert counts.sum() == n  # per-class counts add up to the overall count
    # binomial: share of code ~ 0.25 +- 4 sd
    assert abs(counts[1] / n - 0.25) < 4 * np.sqrt(0.25 * 0.75 / n)
    # each request carries its own class's sizes
    chat, code = req.class_id == 0, req.class_id == 1
    assert np.all(req.prompt_tokens[chat] == 100)
    assert np.all(req.output_tokens[code] == 20)
    assert req.prompt_tokens[code].min() >= 1000 and req.prompt_tokens[code].max() <= 3000
    assert stats.kstest(req.output_tokens[chat], "expon", args=(0, 300)).pvalue > 1e-4
    # exact mean sizes of the mixture (offered load)
    means = expected_means(workload, 600.0)
    assert means.prompt_tokens == pytest.approx(0.75 * 100 + 0.25 * 2000, rel=1e-6)


def test_mixture_weight_sweep_keeps_each_requests_sizes_within_its_class() -> None:
    a = generate(Workload.model_validate(mix_workload((3, 1))), 300.0, 8, 0)
    b = generate(Workload.model_validate(mix_workload((1, 1))), 300.0, 8, 0)
    np.testing.assert_array_equal(a.arrival_s, b.arrival_s)
    same = a.class_id == b.class_id
    assert same.mean() > 0.5 and (~same).any()  # some requests switch class, most keep it
    np.testing.assert_array_equal(a.prompt_tokens[same], b.prompt_tokens[same])
    assert np.all(b.class_id[~same] == 1)  # raising code's weight only turns chat into code


def test_mixture_characterisation_asked_matches_a_large_sample() -> None:
    workload = Workload.model_validate(mix_workload())
    asked = asked_stats(workload, 600.0)
    reqs = [generate(workload, 600.0, 8, r) for r in range(10)]
    sim = simulated_stats(reqs, 600.0)
    assert asked.class_shares == {"chat": 0.75, "code": 0.25}
    assert abs(sim.class_shares["code"] - 0.25) < 4 * np.sqrt(0.1875 / (10 * 12_000))
    assert sim.rate_rps == pytest.approx(20.0, rel=0.02)
    assert sim.prompt.mean == pytest.approx(asked.prompt.mean, rel=0.02)
    # P50 of the prompt mixture: 75% of requests have exactly 100 tokens
    assert asked.prompt.p50 == 100 and sim.prompt.p50 == 100
    # P99: inside code's uniform part, at (0.99 - 0.75) / 0.25 = 96% of [1000, 3000]
    assert asked.prompt.p99 == pytest.approx(1000 + 0.96 * 2000, abs=1)
    # sizes are independent within a class but the classes differ: negative correlation
    assert asked.correlation < -0.2
    assert sim.correlation == pytest.approx(asked.correlation, abs=0.02)


def test_plain_workload_characterisation() -> None:
    ch = characterize(make_scenario(), replications=5)
    assert ch.asked.rate_rps == 2.0 and ch.asked.gap_cv == 1.0
    assert ch.asked.prompt.p50 == round(np.exp(6.0))  # lognormal median e^mu, rounded
    assert ch.simulated.gap_cv == pytest.approx(1.0, abs=0.15)
    assert ch.asked.correlation == 0.0


# ---------------------------------------------------------------- empirical sizes


@pytest.fixture()
def sizes_csv(tmp_path: Path) -> Path:
    values = [5, 12, 12, 40, "", 0, 300, 7, 12, -3]
    lines = ["id,tokens"] + [f"{i},{v}" for i, v in enumerate(values)]
    path = tmp_path / "sizes.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_empirical_sizes_come_from_the_column(sizes_csv: Path) -> None:
    dist = Empirical(dist="empirical", path=str(sizes_csv), column="tokens", max=100)
    x = sample(dist, np.random.default_rng(0), 20_000)
    kept = np.array([5, 12, 12, 40, 100, 7, 12])  # blank, 0, -3 skipped; 300 clamped to max
    assert set(np.unique(x)) == set(np.unique(kept))
    assert rounded_mean(dist) == pytest.approx(kept.mean())
    assert abs(x.mean() - kept.mean()) < 5 * kept.std() / np.sqrt(x.size)
    assert np.mean(x == 12) == pytest.approx(3 / 7, abs=0.02)
    ch = characterize(
        make_scenario(
            workload={
                "arrival": {"process": "poisson", "rate_rps": 2.0},
                "prompt_tokens": {"dist": "empirical", "path": str(sizes_csv), "column": "tokens"},
                "output_tokens": LOGN,
            }
        ),
        replications=2,
    )
    assert any("10 rows, 3 skipped" in note for note in ch.notes)
    assert ch.asked.prompt.p50 == 12


def test_per_class_ttft_adds_up_to_the_overall() -> None:
    workload = mix_workload()
    workload["arrival"]["rate_rps"] = 2.0
    scenario = make_scenario(workload=workload)
    rep = simulate(scenario, "disaggregated", 1)
    flat = rep.result.flat()
    assert flat["n_requests_class_chat"] + flat["n_requests_class_code"] == flat["n_requests"]
    ids = rep.requests.class_id[rep.measured]
    for i, name in enumerate(rep.requests.class_names):
        mine = rep.ttft_s[ids == i]
        assert flat[f"n_requests_class_{name}"] == mine.size > 0
        assert flat[f"ttft_mean_s_class_{name}"] == pytest.approx(mine.mean())
        assert flat[f"ttft_p99_s_class_{name}"] == pytest.approx(np.quantile(mine, 0.99))
    weighted = sum(
        flat[f"n_requests_class_{n}"] * flat[f"ttft_mean_s_class_{n}"] for n in ("chat", "code")
    )
    assert weighted / flat["n_requests"] == pytest.approx(flat["ttft_mean_s"])
    # a single-class workload has no per-class columns
    assert not any("_class_" in k for k in simulate(make_scenario(), "monolithic", 0).result.flat())
