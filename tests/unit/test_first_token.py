"""TTFT semantics of the disaggregated architecture, request by request."""

from __future__ import annotations

import numpy as np
from distsim_testkit import make_scenario

from distsim.sim.replication import simulate


def test_first_token_at_prefill_is_never_later_than_at_decode() -> None:
    archs = {
        "at_decode": {"kind": "disaggregated", "prefill_gpus": 1, "decode_gpus": 2,
                      "first_token": "decode"},
        "at_prefill": {"kind": "disaggregated", "prefill_gpus": 1, "decode_gpus": 2,
                       "first_token": "prefill"},
    }  # fmt: skip
    scenario = make_scenario(duration_s=300.0, architectures=archs, baseline="at_decode")
    decode = simulate(scenario, "at_decode", 0)
    prefill = simulate(scenario, "at_prefill", 0)
    assert np.all(prefill.ttft_s <= decode.ttft_s)
    # The difference is exactly the decode-pool wait plus one decode-token time.
    wait = decode.trace.pools["decode"].wait_s[decode.measured]
    token_s = 1 / scenario.gpu.decode_tokens_per_s
    np.testing.assert_allclose(decode.ttft_s - prefill.ttft_s, wait + token_s, atol=1e-9)
    assert np.any(wait > 0)  # the decode pool does queue at this load


def test_monolithic_first_token_is_prefill_end_for_an_idle_system() -> None:
    # One request at a time (arrivals far apart): TTFT = prompt / prefill rate exactly.
    scenario = make_scenario(
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
