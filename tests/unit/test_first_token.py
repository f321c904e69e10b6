"""TTFT semantics, request by request: one study-level definition for every architecture."""

from __future__ import annotations

import numpy as np
import pytest
from distsim_testkit import make_scenario, make_study, study_dict

from distsim.errors import SpecError
from distsim.sim.replication import simulate
from distsim.spec.study import validate_study

ONE_DISAGG = {"d": {"kind": "disaggregated", "prefill_gpus": 1, "decode_gpus": 2}}


def test_first_token_at_prefill_is_never_later_than_at_decode() -> None:
    at_decode = make_scenario(
        duration_s=300.0, architectures=ONE_DISAGG, baseline="d", first_token="decode"
    )
    at_prefill = make_scenario(duration_s=300.0, architectures=ONE_DISAGG, baseline="d")
    assert at_prefill.first_token == "prefill"  # the default
    decode = simulate(at_decode, "d", 0)
    prefill = simulate(at_prefill, "d", 0)
    scenario = at_decode
    assert np.all(prefill.ttft_s <= decode.ttft_s)
    # The difference is exactly the decode-pool wait plus one decode-token time.
    wait = decode.trace.pools["decode"].wait_s[decode.measured]
    token_s = 1 / scenario.gpu.decode_tokens_per_s
    np.testing.assert_allclose(decode.ttft_s - prefill.ttft_s, wait + token_s, atol=1e-9)
    assert np.any(wait > 0)  # the decode pool does queue at this load


def test_default_disaggregated_ttft_does_not_depend_on_the_decode_pool() -> None:
    """With the default definition a disaggregated TTFT ends at the prefill: a decode pool 8x
    slower (and queueing) changes no request's TTFT, only its end-to-end latency."""
    runs = {}
    for rate in (2000.0, 250.0):
        sc = make_scenario(
            duration_s=200.0, architectures=ONE_DISAGG, baseline="d",
            gpu={"prefill_tokens_per_s": 8000, "decode_tokens_per_s": rate},
        )  # fmt: skip
        runs[rate] = simulate(sc, "d", 0)
    np.testing.assert_array_equal(runs[2000.0].ttft_s, runs[250.0].ttft_s)
    e2e = {r: (x.trace.done_s - x.requests.arrival_s)[x.measured].mean() for r, x in runs.items()}
    assert e2e[250.0] > 2 * e2e[2000.0]


def test_per_architecture_first_token_is_the_old_spelling() -> None:
    # one value on the architectures: read as the study's setting
    old = make_study(
        architectures={"d": {**ONE_DISAGG["d"], "first_token": "decode"}}, baseline="d"
    )
    assert old.first_token == "decode" and old.architectures["d"].first_token == "decode"
    # two definitions in one study: a one-line error naming the replacement
    two = {"a": {**ONE_DISAGG["d"], "first_token": "decode"},
           "b": {**ONE_DISAGG["d"], "first_token": "prefill"}}  # fmt: skip
    with pytest.raises(
        SpecError, match=r"^architectures\.a\.first_token: .*`first_token: prefill`"
    ):
        validate_study(study_dict(architectures=two, baseline="a"))


def test_monolithic_first_token_is_prefill_end_for_an_idle_system() -> None:
    # One request at a time (arrivals far apart): TTFT = prompt / prefill rate exactly.
    scenario = make_scenario(
        first_token="decode",
        duration_s=1000.0,
        warmup_s=0.0,
        workload={
            "arrival": {"process": "poisson", "rate_rps": 0.01},
            "prompt_tokens": {"dist": "constant", "value": 800},
            "output_tokens": {"dist": "constant", "value": 20},
        },
    )
    mono = simulate(scenario, "monolithic", 0)
    np.testing.assert_allclose(mono.ttft_s, 800 / 8000, rtol=1e-12)
    disagg = simulate(scenario, "disaggregated", 0)
    np.testing.assert_allclose(disagg.ttft_s, 800 / 8000 + 1 / 2000, rtol=1e-12)
    e2e = (disagg.trace.done_s - disagg.requests.arrival_s)[disagg.measured]
    np.testing.assert_allclose(e2e, 800 / 8000 + 20 / 2000, rtol=1e-12)
