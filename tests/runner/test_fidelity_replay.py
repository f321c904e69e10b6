"""The fidelity replay's contract (benchmarks/fidelity/distserve.py): reads only arrival_s,
prompt_tokens and output_tokens, writes one JSON object per run with the issue's keys, and
computes the metrics as the data's README defines them (checked by hand on three requests)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

FIDELITY = Path(__file__).resolve().parents[2] / "benchmarks" / "fidelity"
sys.path.insert(0, str(FIDELITY))

import distserve  # noqa: E402

KEYS = {"run", "ttft_p50_s", "ttft_p90_s", "tpot_p50_s", "tpot_p90_s", "slo_attainment"}


def test_metrics_by_hand() -> None:
    """TTFT 0.1, 0.3, 0.15 s; TPOT 0.2 s, 0.05 s and none (one token, meets the TPOT part):
    request 1 misses the SLO on TPOT, request 2 on TTFT, request 3 meets it."""
    ttft = np.array([0.1, 0.3, 0.15])
    tpot = np.array([0.2, 0.05, np.nan])
    out = distserve.summarise(ttft, tpot, np.array([5, 9, 1]))
    assert out["slo_attainment"] == pytest.approx(1 / 3)
    assert out["ttft_p50_s"] == pytest.approx(0.15)
    assert out["ttft_p90_s"] == pytest.approx(0.27)  # numpy linear: 0.15 + 0.8 x (0.3 - 0.15)
    assert out["tpot_p50_s"] == pytest.approx(0.125)
    assert out["tpot_p90_s"] == pytest.approx(0.185)


def test_data_and_json_contract(tmp_path: Path) -> None:
    frame = pd.read_csv(FIDELITY / "data" / "vllm-100-1.csv")
    frame[["arrival_s", "prompt_tokens", "output_tokens"]].to_csv(
        tmp_path / "vllm-100-1.csv", index=False
    )
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")  # not a run: ignored
    out = tmp_path / "out.json"
    assert distserve.main(["--data", str(tmp_path), "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["run"] for r in rows] == ["vllm-100-1"]
    assert set(rows[0]) == KEYS
    assert 0 <= rows[0]["slo_attainment"] <= 1
    assert 0 < rows[0]["ttft_p50_s"] <= rows[0]["ttft_p90_s"]


def test_kv_fit_reads_the_peak_kv_off_measured_times() -> None:
    """fit_kv's estimate by hand, 16-token blocks: request A (prompt 20, 5 tokens) from its first
    token at 1.0 s to its last at 2.0 s; B (prompt 30, 3 tokens) from 1.5 s to 3.5 s. At 1.5 s A
    has generated 1 + floor(0.5 x 4) = 3 tokens (23 -> 2 blocks, 32 tokens) and B 1 (31 -> 2
    blocks, 32): 64. Later A's growth stays in its two blocks until it leaves at 2.0 s, and B
    alone holds at most 33 -> 3 blocks (48): the peak is 64 tokens, first reached at 1.5 s."""
    import fit_kv

    frame = pd.DataFrame(
        {
            "arrival_s": [0.9, 1.2],
            "prompt_tokens": [20, 30],
            "output_tokens": [5, 3],
            "measured_ttft_s": [0.1, 0.3],
            "measured_e2e_s": [1.1, 2.3],
        }
    )
    assert fit_kv.peak_kv_tokens(frame) == (64.0, pytest.approx(1.5))
