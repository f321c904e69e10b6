"""The batched engine: iteration-level continuous batching with a KV cache.

Every instance runs step after step (iteration-level scheduling). A step's length comes from a
step-time model (`distsim.sim.step_time`) given what the step carries: prompt tokens being prefilled
and sequences decoding one token each.

Two implementations give the same per-request times bit for bit: `distsim.sim.batched_simpy`,
the reference (one SimPy process per instance), and `distsim.sim.fast_batched` (the default), a
compiled event loop that replays the reference's events in the same order, ties included.

Pools and queues. Every pool (`gpu` for monolithic; `prefill` and `decode` for disaggregated) has
one FCFS queue. A request is taken by the first instance with room for it (batch slot and KV);
when several idle instances could take a new arrival, the one with the most free KV does (ties:
lowest index). A busy instance takes queued requests at its next step boundary. The queue is
strictly FCFS: a head that does not fit blocks those behind it. That is `routing: central`; with
`round_robin`, `random` or `least_loaded` (the exclusive engine's rules) a request is routed to
one instance when it joins a pool and waits in that instance's own FCFS queue (a preempted one
returns to the front of it); `least_loaded` counts a request's tokens (monolithic: prompt +
output, prefill: prompt, decode: output) until it leaves the pool.

Monolithic instances (`gpu` pool): continuous batching of at most `max_batch_size` sequences.
Without chunking, any sequence with prompt left to prefill makes the step a prefill-only step of
all of them (decodes stall meanwhile); with `chunked_prefill_tokens: N`, every step carries all
running decodes plus prompt chunks, FCFS, up to N tokens in total.

Disaggregated: prefill instances batch whole prompts FCFS up to `prefill_token_budget` tokens and
`max_batch_size` prompts per step (a prompt longer than the budget runs alone). A prefilled
request joins the decode pool's queue; the decode instance that admits it reserves its KV and
pulls it over the instance's own link (`kv_link_gb_s`): transfers on one link run one at a time,
FCFS, each taking prompt_tokens x kv_bytes_per_token / bandwidth. The prompt's KV stays on the
prefill instance until its transfer ends. Decode instances batch every running sequence.

Token accounting (`decode_steps`): with `output-1` (the default, as vLLM and DistServe) the end
of a prefill samples a token, so a request runs `output_tokens - 1` decode iterations, each
adding one token of KV, and a one-token request ends with its prefill (without reaching a
decode pool); a prefill recomputing a preempted sequence samples its next token too. With
`output` (the exclusive engine's accounting) it runs `output_tokens` decode iterations after the
prefill. The first token is reported at the end of the prefill (monolithic; disaggregated with
`first_token: prefill`) or of the first decode iteration (`first_token: decode`).

KV cache. Admission reserves the request's whole context (prompt, plus tokens generated before a
preemption) and keeps one token of headroom per sequence in the batch, plus the monolithic pool's
watermark (`kv_watermark`: int(watermark x blocks) blocks left free by an admission, as vLLM's block
manager does; decodes may use them), so a full cache stops admissions. Before each step the decoding
sequences need one more token each; if that does not fit, the newest sequence of the batch (last to
join) is preempted: its KV is freed, it goes back to the front of its pool's queue and later
recomputes its prompt and the tokens generated so far as a prefill (on whichever instance of the
pool admits it). Preemptions and recomputed tokens are counted. A decode instance whose KV is
reserved for transfers still in flight can preempt its last running sequence; it then waits for the
transfers (it takes no empty step). A request whose context cannot fit an empty instance is an
error, not a silent drop.
"""

from __future__ import annotations

import numpy as np

from distsim.sim import Implementation, batched_simpy, fast_batched
from distsim.sim.batched_simpy import Checker, StepRecord
from distsim.sim.serving import ServingConfig
from distsim.sim.timeline import Timeline
from distsim.workload.generate import Requests

__all__ = ["Checker", "Implementation", "StepRecord", "run"]


def run(
    requests: Requests,
    plan: ServingConfig,
    checker: Checker | None = None,
    implementation: Implementation = "fast",
    route_u: np.ndarray | None = None,
) -> Timeline:
    """Simulate one architecture's batched instances until every request has finished.

    `checker`, if given, is called with a `StepRecord` for every step, in the order the steps
    start (the fast implementation calls it after its compiled loop has run). `route_u`: per
    request, uniforms on [0, 1) (column 0: the entry pool, 1: the decode pool), needed by
    `plan.routing == "random"` (`distsim.sim.replication.routing_draws`)."""
    if implementation == "fast":
        return fast_batched.run(requests, plan, checker, route_u)
    if implementation == "simpy":
        return batched_simpy.run(requests, plan, checker, route_u)
    raise ValueError(f"implementation: '{implementation}' is not one of fast, simpy")
