"""The serving sections of a spec: presets resolve, and bad serving input is one line naming the
field, exit code 2 (through the CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from distsim_testkit import one_line_error, study_dict
from typer.testing import CliRunner

from distsim.cli import app
from distsim.sim import serving
from distsim.spec.study import Study

runner = CliRunner()

PRESETS = {"model": {"preset": "opt-13b"}, "gpu": {"preset": "a100-80gb"}, "engine": "batched"}


def batched(**changes: Any) -> dict[str, Any]:
    data = study_dict(**PRESETS)
    data.update(changes)
    return data


def test_presets_alone_serve_both_engines() -> None:
    for engine in ("exclusive", "batched"):
        study = Study.model_validate(batched(engine=engine))
        rates = serving.token_rates(study)
        assert rates is not None and rates.decode_tokens_per_s > 0
    figures = serving.derived_figures(Study.model_validate(batched()))
    assert figures["kv_bytes_per_token"] == 819_200
    assert figures["architectures"]["monolithic"]["gpu"]["kv_capacity_tokens"] == 56_518


def test_explicit_fields_override_the_preset() -> None:
    study = Study.model_validate(batched(gpu={"preset": "a100-80gb", "mfu": 0.5}))
    hw = study.gpu.hardware()
    assert hw.mfu == 0.5 and hw.peak_tflops == 312.0
    own = Study.model_validate(
        batched(model={"params_b": 7, "layers": 32, "kv_heads": 8, "head_dim": 128, "hidden": 4096})
    )
    assert own.model.shape().kv_bytes_per_token == 2 * 32 * 8 * 128 * 2


def test_explicit_profile_coefficients() -> None:
    coeffs = {
        1: {
            "prefill": [10, 0.1, 0],
            "decoding_smallbs": [20, 0.001, 0.05],
            "decoding_largebs": [10, 0.001, 0.1],
            "decoding_large_small_bs_threshold": 64,
        }
    }
    study = Study.model_validate(batched(step_time={"model": "profile", "coefficients": coeffs}))
    step = serving.step_model(study, 1)
    assert step.step_s(100, 0.0, 0, 0, 0) == pytest.approx(0.020)


BAD = [
    ("unknown model preset", batched(model={"preset": "gpt-5"}), ["model.preset"]),
    ("incomplete model", batched(model={"params_b": 7}), ["model", "missing: layers"]),
    ("unknown gpu field", batched(gpu={"preset": "a100-80gb", "tflops": 1}), ["gpu.tflops", "unknown field"]),
    ("half the rates", study_dict(gpu={"prefill_tokens_per_s": 8000}), ["gpu", "both"]),
    ("no rates, no hardware", study_dict(gpu={"memory_fraction": 0.9}), ["gpu", "prefill_tokens_per_s"]),
    ("roofline without model", batched(model=None), ["gpu"]),
    ("tp does not divide", batched(architectures={"monolithic": {"kind": "monolithic", "gpus": 3, "tensor_parallel": 2}}, baseline="monolithic"),
     ["architectures.monolithic", "multiple of tensor_parallel"]),
    ("model too big", batched(model={"preset": "llama-3-70b"}), ["architectures.", "no KV cache"]),
    ("profile for another model", batched(model={"preset": "llama-2-7b"}, step_time={"model": "profile", "preset": "distserve"}),
     ["step_time.preset", "opt-13b"]),
    ("profile tp missing", batched(model={"preset": "opt-66b"}, step_time={"model": "profile", "preset": "vllm"},
     architectures={"monolithic": {"kind": "monolithic", "gpus": 4, "tensor_parallel": 1}}, baseline="monolithic"),
     ["step_time.preset", "tensor parallel 1"]),
    ("profile on another gpu", batched(gpu={"preset": "h100-sxm"}, step_time={"model": "profile", "preset": "distserve"}),
     ["step_time.preset", "a100-80gb"]),
    ("unknown step model", batched(step_time={"model": "magic"}), ["step_time", "magic"]),
    ("chunk below batch", batched(architectures={"monolithic": {"kind": "monolithic", "gpus": 2, "max_batch_size": 64, "chunked_prefill_tokens": 32}}, baseline="monolithic"),
     ["architectures.monolithic", "chunked_prefill_tokens"]),
    ("empty slo", batched(slo={}), ["slo", "ttft_s"]),
    ("goodput without slo", batched(goodput={"rates_rps": [1, 2]}), ["goodput", "slo"]),
    ("bad engine", batched(engine="turbo"), ["engine"]),
]  # fmt: skip


@pytest.mark.parametrize("data, needles", [(d, n) for _, d, n in BAD], ids=[b[0] for b in BAD])
def test_bad_serving_spec_is_one_line(tmp_path: Path, data: dict, needles: list[str]) -> None:
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(data))
    one_line_error(runner.invoke(app, ["validate", str(p)]), *needles)
