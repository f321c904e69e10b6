"""Trace workloads: replay, window and resample against the trace file itself (read here with the
standard library, independently of distsim's reader), rate_scale, and the exact offered load."""

from __future__ import annotations

import csv
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import yaml
from distsim_testkit import AZURE_CODE as CODE
from distsim_testkit import AZURE_DATA as DATA
from distsim_testkit import study_dict
from scipy import stats

from distsim.errors import SpecError
from distsim.sim.metrics import offered_load
from distsim.spec.study import Gpu, Monolithic, Workload, load_study
from distsim.workload import trace_files as tracedata
from distsim.workload.generate import data_digests, data_files, expected_means, generate

CONV = DATA / "AzureLLMInferenceTrace_conv.csv"


def read_azure(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(seconds from the first row, prompt, output) with csv + datetime, not pandas."""
    stamps, prompt, output = [], [], []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            whole, _, frac = row["TIMESTAMP"].partition(".")
            t = datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").timestamp()
            stamps.append((t, float("0." + (frac or "0"))))
            prompt.append(int(row["ContextTokens"]))
            output.append(int(row["GeneratedTokens"]))
    t0, f0 = stamps[0]
    seconds = np.array([(t - t0) + (f - f0) for t, f in stamps])
    return seconds, np.array(prompt), np.array(output)


@pytest.fixture(scope="module")
def code_trace() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return read_azure(CODE)


def trace_workload(path: Path, **trace: object) -> Workload:
    return Workload.model_validate({"trace": {"path": str(path), **trace}})


def gap_cv(t: np.ndarray) -> float:
    g = np.diff(t)
    return float(g.std() / g.mean())


# ---------------------------------------------------------------- replay


def test_replay_reproduces_the_trace_exactly(code_trace) -> None:
    seconds, prompt, output = code_trace
    duration_s = 1000.0
    req = generate(trace_workload(CODE, mode="replay"), duration_s, seed=1, replication=0)
    n = int((seconds < duration_s).sum())
    assert len(req) == n > 0
    assert req.arrival_s[0] == 0.0
    np.testing.assert_allclose(req.arrival_s, seconds[:n], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(req.prompt_tokens, prompt[:n])
    np.testing.assert_array_equal(req.output_tokens, output[:n])
    # deterministic: every replication and seed is the same
    other = generate(trace_workload(CODE, mode="replay"), duration_s, seed=9, replication=5)
    np.testing.assert_array_equal(other.arrival_s, req.arrival_s)


def test_rate_scale_two_doubles_the_rate_and_keeps_sizes(code_trace) -> None:
    seconds, prompt, output = code_trace
    one = generate(trace_workload(CODE, mode="replay"), 1000.0, 1, 0)
    two = generate(trace_workload(CODE, mode="replay", rate_scale=2.0), 500.0, 1, 0)
    # half the time holds the same requests: twice the rate, same burst shape, same sizes
    assert len(two) == len(one)
    np.testing.assert_allclose(two.arrival_s, one.arrival_s / 2.0, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(two.prompt_tokens, one.prompt_tokens)
    np.testing.assert_array_equal(two.output_tokens, one.output_tokens)
    span = seconds[-1]
    long_run = (seconds.size - 1) / span
    for mode in ("window", "replay", "resample"):
        m1 = expected_means(trace_workload(CODE, mode=mode), None)
        m2 = expected_means(trace_workload(CODE, mode=mode, rate_scale=2.0), None)
        assert m1.rate_rps == pytest.approx(long_run, rel=1e-9)
        assert m2.rate_rps == pytest.approx(2 * long_run, rel=1e-9)
        assert (m2.prompt_tokens, m2.output_tokens) == (m1.prompt_tokens, m1.output_tokens)
        assert m1.prompt_tokens == pytest.approx(prompt.mean())
    # resample: twice the requests in the same time (Poisson counts), size draws unchanged
    r1 = generate(trace_workload(CODE, mode="resample"), 600.0, 3, 0)
    r2 = generate(trace_workload(CODE, mode="resample", rate_scale=2.0), 600.0, 3, 0)
    expected = 2 * long_run * 600.0
    assert abs(len(r2) - expected) < 5 * np.sqrt(expected)
    k = min(len(r1), len(r2))
    np.testing.assert_array_equal(r1.prompt_tokens[:k], r2.prompt_tokens[:k])


# ---------------------------------------------------------------- window


def _locate(req, prompt: np.ndarray, output: np.ndarray) -> int:
    """Index in the trace where the window's (prompt, output) run starts."""
    n = len(req)
    for j in np.flatnonzero((prompt == req.prompt_tokens[0]) & (output == req.output_tokens[0])):
        if np.array_equal(prompt[j : j + n], req.prompt_tokens) and np.array_equal(
            output[j : j + n], req.output_tokens
        ):
            return int(j)
    raise AssertionError("the window is not a contiguous run of the trace")


def test_window_is_a_slice_of_the_trace_and_keeps_its_burstiness(code_trace) -> None:
    seconds, prompt, output = code_trace
    duration_s = 600.0
    workload = trace_workload(CODE)  # mode window is the default
    starts = []
    for r in range(4):
        req = generate(workload, duration_s, seed=11, replication=r)
        assert len(req) > 100
        assert req.arrival_s.min() >= 0 and req.arrival_s.max() < duration_s
        j = _locate(req, prompt, output)
        starts.append(j)
        # arrivals as recorded: the same gaps as the trace, shifted
        np.testing.assert_allclose(
            np.diff(req.arrival_s), np.diff(seconds[j : j + len(req)]), rtol=0, atol=1e-6
        )
        # every trace request inside the window's time span is in the window
        t0 = seconds[j] - req.arrival_s[0]
        inside = (seconds >= t0 + 1e-6) & (seconds < t0 + duration_s - 1e-6)
        assert len(req) - 2 <= int(inside.sum()) <= len(req)
        # bursty: the trace's gap CV is ~13; Poisson would give 1
        assert gap_cv(req.arrival_s) > 4.0
    assert len(set(starts)) == 4, "replications must get different windows"
    again = generate(workload, duration_s, seed=11, replication=2)
    np.testing.assert_array_equal(again.arrival_s, generate(workload, duration_s, 11, 2).arrival_s)
    assert _locate(again, prompt, output) == starts[2]
    assert _locate(generate(workload, duration_s, 12, 2), prompt, output) != starts[2]


def test_window_on_the_conversation_trace_keeps_its_rate_drift() -> None:
    # Its gaps are near-exponential (CV ~1.1) but its rate drifts over the hour: windows placed
    # at different times hold very different numbers of requests. For Poisson windows the spread
    # of counts would be ~sqrt(mean); the trace's is ~9x that.
    workload = trace_workload(CONV)
    reqs = [generate(workload, 600.0, seed=5, replication=r) for r in range(20)]
    counts = np.array([len(r) for r in reqs], dtype=float)
    assert counts.std() > 3 * np.sqrt(counts.mean())
    assert all(gap_cv(r.arrival_s) > 0.95 for r in reqs)


def test_expected_window_count_matches_the_average_over_windows(code_trace) -> None:
    # Exact expectation of the requests per window (used by offered load) vs a Monte Carlo
    # average over 400 windows: the window start is uniform, so the average converges to it.
    seconds, prompt, _ = code_trace
    workload = trace_workload(CODE)
    means = expected_means(workload, 600.0)
    counts, prompt_sums = [], []
    for r in range(400):
        req = generate(workload, 600.0, seed=2, replication=r)
        counts.append(len(req))
        prompt_sums.append(req.prompt_tokens.sum())
    counts_a = np.array(counts, dtype=float)
    se = counts_a.std() / np.sqrt(counts_a.size)
    assert abs(counts_a.mean() - means.rate_rps * 600.0) < 4 * se
    sums = np.array(prompt_sums, dtype=float)
    exact_sum = means.rate_rps * 600.0 * means.prompt_tokens
    assert abs(sums.mean() - exact_sum) < 4 * sums.std() / np.sqrt(sums.size)
    # replay: offered load is exactly what is replayed
    replay = trace_workload(CODE, mode="replay")
    keep = seconds < 600.0
    m = expected_means(replay, 600.0)
    assert m.rate_rps == pytest.approx(keep.sum() / 600.0)
    assert m.prompt_tokens == pytest.approx(prompt[keep].mean())
    gpu = Gpu(prefill_tokens_per_s=8000, decode_tokens_per_s=2000)
    load = offered_load(replay, gpu, Monolithic(kind="monolithic", gpus=2), 600.0)["gpu"]
    work_s = (prompt[keep] / 8000).sum() + (code_trace[2][keep] / 2000).sum()
    assert load == pytest.approx(work_s / 600.0 / 2)


def test_a_window_longer_than_the_trace_is_refused(tmp_path: Path) -> None:
    data = study_dict(workload={"trace": {"path": str(CODE), "rate_scale": 2.0}})
    data["duration_s"] = 2000.0
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError, match="rate_scale"):
        load_study(spec)


# ---------------------------------------------------------------- resample


def test_resample_draws_pairs_of_the_trace(code_trace) -> None:
    _, prompt, output = code_trace
    pairs = set(zip(prompt.tolist(), output.tolist(), strict=True))
    workload = trace_workload(CODE, mode="resample")
    req = [generate(workload, 600.0, seed=4, replication=r) for r in range(3)]
    p = np.concatenate([r.prompt_tokens for r in req])
    o = np.concatenate([r.output_tokens for r in req])
    assert p.size > 3000
    assert set(zip(p.tolist(), o.tolist(), strict=True)) <= pairs
    assert stats.ks_2samp(p, prompt).pvalue > 0.001
    assert stats.ks_2samp(o, output).pvalue > 0.001
    # ... and a wrong source would be caught: the conversation trace's prompts differ
    _, conv_prompt, _ = read_azure(CONV)
    assert stats.ks_2samp(p, conv_prompt).pvalue < 1e-6
    # arrivals: Poisson at the trace's mean rate (not the trace's bursts)
    rate = (prompt.size - 1) / code_trace[0][-1]
    n = sum(len(r) for r in req)
    assert abs(n - 3 * 600.0 * rate) < 5 * np.sqrt(3 * 600.0 * rate)
    assert abs(gap_cv(req[0].arrival_s) - 1.0) < 0.1


def test_resample_with_a_given_process_and_rate() -> None:
    workload = Workload.model_validate(
        {
            "trace": {"path": str(CODE), "mode": "resample", "rate_scale": 2.0},
            "arrival": {"process": "gamma", "rate_rps": 3.0, "cv": 2.0},
        }
    )
    assert expected_means(workload, 600.0).rate_rps == pytest.approx(6.0)
    req = generate(workload, 2000.0, seed=1, replication=0)
    assert abs(len(req) / 2000.0 - 6.0) < 5 * 2.0 * np.sqrt(6.0 / 2000.0)


def test_study_paths_are_relative_to_the_spec_file(tmp_path: Path) -> None:
    folder = tmp_path / "deep" / "studies"
    (folder / "traces").mkdir(parents=True)
    shutil.copy(CODE, folder / "traces" / "t.csv")
    data = study_dict(workload={"trace": {"path": "traces/t.csv"}})
    data["sweep"] = {"workload.trace.rate_scale": [1.0, 2.0]}
    (folder / "s.yaml").write_text(yaml.safe_dump(data))
    study = load_study(folder / "s.yaml")  # from a different working directory
    assert Path(study.workload.trace.path) == (folder / "traces" / "t.csv").resolve()


def test_shipped_trace_data_replaces_the_file(tmp_path: Path) -> None:
    # A cluster worker without the driver's filesystem: the driver snapshots the parsed data, the
    # worker installs it, and generation gives the same requests without reading any file.
    local = tmp_path / "t.csv"
    shutil.copy(CODE, local)
    workload = trace_workload(local)
    files = data_files(workload)
    assert files == [(str(local), None)]
    assert data_digests(workload)[str(local)] == tracedata.read_trace(str(CODE)).sha256
    before = generate(workload, 600.0, 3, 1)
    shipped = tracedata.snapshot(files)
    local.unlink()
    tracedata._cached_trace.cache_clear()
    with pytest.raises(Exception, match="no such file"):
        generate(workload, 600.0, 3, 1)
    tracedata.install(shipped)
    after = generate(workload, 600.0, 3, 1)
    np.testing.assert_array_equal(before.arrival_s, after.arrival_s)
    np.testing.assert_array_equal(before.prompt_tokens, after.prompt_tokens)
