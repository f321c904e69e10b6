"""The batched engine's reference implementation: one SimPy process per instance.

This is the model as first written (the scheduling, KV and preemption rules are stated in
`distsim.sim.batched`): every instance is a SimPy process stepping iteration by iteration, KV
links are `simpy.Resource`s and each transfer is a process. `distsim.sim.fast_batched` replays
exactly this event sequence, much faster; tests/engines/test_fast_batched.py checks the two agree
request
by request. Select it with `implementation="simpy"`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import numpy as np
import simpy

from distsim.errors import SimulationError
from distsim.sim.serving import PoolConfig, ServingConfig
from distsim.sim.timeline import PoolTimeline, ServingStats, Timeline, TransferLog
from distsim.spec.hardware import GB
from distsim.workload.generate import Requests


@dataclass(frozen=True)
class StepRecord:
    """What one step carried, handed to an optional checker (tests assert invariants on it)."""

    pool: str
    instance: int
    start_s: float
    duration_s: float
    prefill_chunks: tuple[tuple[int, int], ...]  # (request, tokens)
    decode_ids: tuple[int, ...]
    kv_used_tokens: float  # after this step's growth
    kv_capacity_tokens: float
    max_batch_size: int
    token_budget: int | None  # chunk budget (gpu pool) or prompt budget (prefill pool)

    @property
    def batch_size(self) -> int:
        return len(self.prefill_chunks) + len(self.decode_ids)


Checker = Callable[[StepRecord], None]


@dataclass(slots=True, eq=False)
class _Seq:
    rid: int
    prompt: int
    output: int
    generated: int = 0
    prefill_left: int = 0  # tokens still to prefill on the current instance
    prefill_done: int = 0  # tokens of the current prefill already in the cache
    kv: int = 0  # KV tokens held (or reserved) on the current instance
    queued_at: float = 0.0
    needs_transfer: bool = False
    source: _PrefillInstance | None = None


class _Recorder:
    """Per-request arrays and per-pool counters, filled in as the simulation runs."""

    def __init__(self, n: int, pools: dict[str, PoolConfig]) -> None:
        self.first = np.full(n, np.nan)
        self.done = np.full(n, np.nan)
        self.wait = {p: np.zeros(n) for p in pools}
        self.busy = {p: np.zeros(n) for p in pools}
        self.step_time = dict.fromkeys(pools, 0.0)
        self.batch_time = dict.fromkeys(pools, 0.0)  # sum of batch size x step time
        self.preemptions = 0
        self.recomputed_tokens = 0
        self.transfers: list[tuple[int, int, float, float]] = []  # (request, link, start, end)


class _Pool:
    """A pool's FCFS queue and its instances; with routing, each instance's own queue.

    `route_u`: this pool's column of the routing draws (`random`); `tokens(seq)`: what a
    sequence counts toward its instance's load (`least_loaded`) until it leaves the pool."""

    def __init__(
        self,
        env: simpy.Environment,
        plan: PoolConfig,
        rec: _Recorder,
        routing: str = "central",
        route_u: np.ndarray | None = None,
        tokens: Callable[[_Seq], int] | None = None,
    ) -> None:
        self.env = env
        self.plan = plan
        self.rec = rec
        self.queue: deque[_Seq] = deque()
        self.instances: list[_Instance | _PrefillInstance] = []
        self.routing = routing
        self.route_u = route_u
        self.tokens = tokens
        self.joined = 0  # requests routed so far (round robin)

    def route(self, seq: _Seq) -> _InstanceBase:
        """The instance a request joining the pool is sent to (routing other than central)."""
        n = len(self.instances)
        if self.routing == "round_robin":
            inst = self.instances[self.joined % n]
        elif self.routing == "random":
            assert self.route_u is not None
            inst = self.instances[min(int(self.route_u[seq.rid] * n), n - 1)]
        else:  # least_loaded: fewest outstanding tokens, ties to the lowest index
            inst = min(self.instances, key=lambda i: i.load)
            assert self.tokens is not None
            inst.load += self.tokens(seq)
        self.joined += 1
        return inst

    def leave(self, inst: _InstanceBase, seq: _Seq) -> None:
        """A sequence routed to `inst` leaves the pool (finished, or handed to the next pool)."""
        if self.routing == "least_loaded":
            assert self.tokens is not None
            inst.load -= self.tokens(seq)

    def submit(self, seq: _Seq, front: bool = False, inst: _InstanceBase | None = None) -> None:
        """Join the pool's queue (front: a preempted sequence, back to `inst`'s own queue when
        routed), then wake the idle instances that could take it."""
        seq.queued_at = self.env.now
        if self.routing != "central":
            if inst is None:
                inst = self.route(seq)
            if front:
                inst.queue.appendleft(seq)
            else:
                inst.queue.append(seq)
            inst.notify()
            return
        if front:
            self.queue.appendleft(seq)
        else:
            self.queue.append(seq)
        idle = [inst for inst in self.instances if inst.wake is not None]
        idle.sort(key=lambda inst: -inst.free_kv())  # stable: ties keep the lowest index first
        for inst in idle:
            inst.notify()


class _InstanceBase:
    def __init__(self, pool: _Pool, index: int, checker: Checker | None) -> None:
        self.env = pool.env
        self.pool = pool
        self.plan = pool.plan
        self.rec = pool.rec
        self.index = index
        self.checker = checker
        self.capacity = pool.plan.kv_capacity_tokens
        self.block = pool.plan.kv_block_tokens
        self.kv_used = 0
        self.kv_integral = 0.0  # token-seconds, for the mean KV use
        self.kv_since = 0.0
        self.wake: simpy.Event | None = None
        # the queue it serves: the pool's (central) or its own (routed)
        self.queue: deque[_Seq] = pool.queue if pool.routing == "central" else deque()
        self.load = 0  # outstanding tokens routed here (least_loaded)

    def held(self, tokens: int) -> int:
        """KV held for a context of `tokens`: rounded up to whole blocks."""
        b = self.block
        return tokens if b == 1 else -(-tokens // b) * b

    def growth(self, decodes: list[_Seq]) -> int:
        """KV a decode iteration of `decodes` adds: a block for each whose last block is full."""
        b = self.block
        return len(decodes) if b == 1 else b * sum(1 for s in decodes if s.kv % b == 0)

    def free_kv(self) -> float:
        return self.capacity - self.kv_used

    def change_kv(self, delta: int) -> None:
        now = self.env.now
        self.kv_integral += self.kv_used * (now - self.kv_since)
        self.kv_since = now
        self.kv_used += delta

    def notify(self) -> None:
        if self.wake is not None and not self.wake.triggered:
            self.wake.succeed()

    def sleep(self) -> simpy.Event:
        self.wake = self.env.event()
        return self.wake

    def account(self, seqs: list[_Seq], dt: float) -> None:
        name = self.plan.name
        self.rec.step_time[name] += dt
        self.rec.batch_time[name] += len(seqs) * dt
        gpus = self.plan.tensor_parallel * self.plan.pipeline_parallel
        share = dt * gpus / len(seqs)
        busy = self.rec.busy[name]
        for s in seqs:
            busy[s.rid] += share

    def too_big(self, seq: _Seq, need: int) -> SimulationError:
        return SimulationError(
            f"request {seq.rid} needs {need} KV tokens ({seq.prompt} prompt + {seq.output} "
            f"output) but an instance of the {self.plan.name} pool holds "
            f"{self.capacity:.0f}; cap the token distributions with `max`"
        )


class _Instance(_InstanceBase):
    """A monolithic instance, or a decode instance of a disaggregated architecture."""

    def __init__(
        self,
        pool: _Pool,
        index: int,
        checker: Checker | None,
        first_at_prefill: bool,
        emit_at_prefill: bool,
        link_gb_s: float | None = None,
        kv_bytes_per_token: float = 0.0,
    ) -> None:
        super().__init__(pool, index, checker)
        self.running: list[_Seq] = []
        self.emit_at_prefill = emit_at_prefill
        self.in_transfer = 0
        self.first_at_prefill = first_at_prefill
        self.link = simpy.Resource(self.env, capacity=1) if link_gb_s is not None else None
        self.link_bytes_per_s = (link_gb_s or 1.0) * GB
        self.kv_bytes_per_token = kv_bytes_per_token

    def _fits(self, need: int) -> bool:
        seqs = len(self.running) + self.in_transfer + 1
        return (
            seqs <= self.plan.max_batch_size
            and self.kv_used + self.held(need) + seqs + self.plan.kv_admit_reserve_tokens
            <= self.capacity
        )

    def admit(self) -> None:
        q = self.queue
        while q:
            seq = q[0]
            # the context to hold: prompt and tokens generated, except the last token's KV,
            # which a transferred sequence writes in its next decode iteration
            need = seq.prompt + seq.generated
            if seq.needs_transfer and self.emit_at_prefill:
                need -= 1
            if not self._fits(need):
                if not self.running and not self.in_transfer:
                    raise self.too_big(seq, seq.prompt + seq.output)
                return
            q.popleft()
            self.rec.wait[self.plan.name][seq.rid] += self.env.now - seq.queued_at
            seq.kv = need
            self.change_kv(self.held(need))
            if seq.needs_transfer:
                self.in_transfer += 1
                self.env.process(self._transfer(seq))
            else:
                self.running.append(seq)

    def _transfer(self, seq: _Seq) -> Generator[simpy.Event, None, None]:
        assert self.link is not None and seq.source is not None
        with self.link.request() as grant:
            yield grant
            start = self.env.now
            dt = seq.prompt * self.kv_bytes_per_token / self.link_bytes_per_s
            if dt > 0:
                yield self.env.timeout(dt)
            self.rec.transfers.append((seq.rid, self.index, start, self.env.now))
        seq.source.release(seq.prompt)
        seq.source = None
        seq.needs_transfer = False
        self.in_transfer -= 1
        self.running.append(seq)
        self.notify()

    def _compose(self) -> tuple[list[tuple[_Seq, int]], list[_Seq]]:
        decodes = [s for s in self.running if s.prefill_left == 0]
        prefills = [s for s in self.running if s.prefill_left > 0]
        budget = self.plan.token_budget
        if budget is None:
            if prefills:
                cap = self.plan.prefill_cap
                if cap is None:
                    return [(s, s.prefill_left) for s in prefills], []
                whole: list[tuple[_Seq, int]] = []
                tokens = 0
                for s in prefills:  # FCFS while the cap holds (the first always runs)
                    if whole and tokens + s.prefill_left > cap:
                        break
                    whole.append((s, s.prefill_left))
                    tokens += s.prefill_left
                return whole, []
            return [], decodes
        room = budget - len(decodes)
        chunks: list[tuple[_Seq, int]] = []
        for s in prefills:
            if room <= 0:
                break
            c = min(s.prefill_left, room)
            chunks.append((s, c))
            room -= c
        return chunks, decodes

    def _preempt_newest(self) -> None:
        victim = self.running.pop()
        self.change_kv(-self.held(victim.kv))
        victim.kv = 0
        context = victim.prompt + victim.generated
        self.rec.preemptions += 1
        self.rec.recomputed_tokens += context - victim.prefill_left  # computed KV thrown away
        victim.prefill_left = context
        victim.prefill_done = 0
        self.pool.submit(victim, front=True, inst=self)

    def run(self) -> Generator[simpy.Event, None, None]:
        env, rec, name = self.env, self.rec, self.plan.name
        step = self.plan.step
        while True:
            self.admit()
            if not self.running:
                yield self.sleep()
                self.wake = None
                continue
            chunks, decodes = self._compose()
            while self.kv_used + self.growth(decodes) > self.capacity:
                if len(self.running) == 1 and not self.in_transfer:
                    s = self.running[0]
                    raise self.too_big(s, s.prompt + s.output)
                self._preempt_newest()
                chunks, decodes = self._compose()
            if not self.running:  # all preempted while transfers are in flight: wait for them
                continue
            p_tokens = 0
            p_sq = 0.0
            p_ctx = 0
            for s, c in chunks:
                p_tokens += c
                p_sq += c * c + 2.0 * c * s.prefill_done
                p_ctx += s.prefill_done
            k_ctx = 0
            for s in decodes:
                k_ctx += s.kv
            dt = step.step_s(p_tokens, p_sq, p_ctx, len(decodes), k_ctx)
            batch = [s for s, _ in chunks] + decodes
            if self.checker is not None:
                self.checker(
                    StepRecord(
                        pool=name, instance=self.index, start_s=env.now, duration_s=dt,
                        prefill_chunks=tuple((s.rid, c) for s, c in chunks),
                        decode_ids=tuple(s.rid for s in decodes),
                        kv_used_tokens=self.kv_used + self.growth(decodes),
                        kv_capacity_tokens=self.capacity,
                        max_batch_size=self.plan.max_batch_size,
                        token_budget=self.plan.token_budget,
                    )
                )  # fmt: skip
            self.account(batch, dt)
            yield env.timeout(dt)
            now = env.now
            finished = False
            for s, c in chunks:
                s.prefill_left -= c
                s.prefill_done += c
                if s.prefill_left == 0:
                    s.prefill_done = 0
                    if self.first_at_prefill and math.isnan(rec.first[s.rid]):
                        rec.first[s.rid] = now
                    if self.emit_at_prefill:  # the prefill's last position samples a token
                        s.generated += 1
                        if s.generated == s.output:
                            rec.done[s.rid] = now
                            self.change_kv(-self.held(s.kv))
                            self.pool.leave(self, s)
                            finished = True
            if decodes:
                self.change_kv(self.growth(decodes))
                for s in decodes:
                    s.generated += 1
                    s.kv += 1
                    if math.isnan(rec.first[s.rid]):
                        rec.first[s.rid] = now
                    if s.generated == s.output:
                        rec.done[s.rid] = now
                        self.change_kv(-self.held(s.kv))
                        self.pool.leave(self, s)
                        finished = True
            if finished:
                self.running = [s for s in self.running if s.generated < s.output]


class _PrefillInstance(_InstanceBase):
    """A prefill-only instance of a disaggregated architecture."""

    def __init__(
        self,
        pool: _Pool,
        index: int,
        checker: Checker | None,
        decode: _Pool,
        first: bool,
        emit_at_prefill: bool,
    ) -> None:
        super().__init__(pool, index, checker)
        self.decode = decode
        self.first_at_prefill = first
        self.emit_at_prefill = emit_at_prefill

    def release(self, tokens: int) -> None:
        """A transfer has ended: the prompt's KV leaves this instance."""
        self.change_kv(-self.held(tokens))
        self.notify()

    def _take_batch(self) -> list[_Seq]:
        q = self.queue
        batch: list[_Seq] = []
        tokens = 0
        budget = self.plan.token_budget or math.inf
        while q and len(batch) < self.plan.max_batch_size:
            seq = q[0]
            if batch and tokens + seq.prompt > budget:
                break
            if self.kv_used + self.held(seq.prompt) > self.capacity:
                if not batch and self.kv_used == 0:
                    raise self.too_big(seq, seq.prompt)
                break
            q.popleft()
            self.rec.wait[self.plan.name][seq.rid] += self.env.now - seq.queued_at
            self.change_kv(self.held(seq.prompt))
            batch.append(seq)
            tokens += seq.prompt
        return batch

    def run(self) -> Generator[simpy.Event, None, None]:
        env, rec = self.env, self.rec
        step = self.plan.step
        while True:
            batch = self._take_batch()
            if not batch:
                yield self.sleep()
                self.wake = None
                continue
            p_tokens = sum(s.prompt for s in batch)
            p_sq = float(sum(s.prompt * s.prompt for s in batch))
            dt = step.step_s(p_tokens, p_sq, 0, 0, 0)
            if self.checker is not None:
                self.checker(
                    StepRecord(
                        pool=self.plan.name, instance=self.index, start_s=env.now, duration_s=dt,
                        prefill_chunks=tuple((s.rid, s.prompt) for s in batch), decode_ids=(),
                        kv_used_tokens=self.kv_used, kv_capacity_tokens=self.capacity,
                        max_batch_size=self.plan.max_batch_size,
                        token_budget=self.plan.token_budget,
                    )
                )  # fmt: skip
            self.account(batch, dt)
            yield env.timeout(dt)
            for s in batch:
                self.pool.leave(self, s)
                if self.first_at_prefill:
                    rec.first[s.rid] = env.now
                s.prefill_left = 0
                if self.emit_at_prefill:
                    s.generated += 1
                    if s.generated == s.output:  # one output token: done, nothing to decode
                        if math.isnan(rec.first[s.rid]):
                            rec.first[s.rid] = env.now
                        rec.done[s.rid] = env.now
                        self.change_kv(-self.held(s.prompt))
                        continue
                s.needs_transfer = True
                s.source = self
                self.decode.submit(s)


@dataclass
class _Arrivals:
    requests: Requests
    pool: _Pool
    seqs: list[_Seq] = field(default_factory=list)

    def run(self, env: simpy.Environment) -> Generator[simpy.Event, None, None]:
        r = self.requests
        for i in range(len(r)):
            t = float(r.arrival_s[i])
            if t > env.now:
                yield env.timeout(t - env.now)
            prompt = int(r.prompt_tokens[i])
            seq = _Seq(rid=i, prompt=prompt, output=int(r.output_tokens[i]), prefill_left=prompt)
            self.pool.submit(seq)


def _route_tokens(name: str) -> Callable[[_Seq], int]:
    """What a request counts toward its instance's load in pool `name` (as the exclusive
    engine: the tokens the pool works on)."""
    if name == "prefill":
        return lambda s: s.prompt
    if name == "decode":
        return lambda s: s.output
    return lambda s: s.prompt + s.output


def run(
    requests: Requests,
    plan: ServingConfig,
    checker: Checker | None = None,
    route_u: np.ndarray | None = None,
) -> Timeline:
    """Simulate one architecture's batched instances until every request has finished.

    `route_u`: per request, uniforms on [0, 1) (column 0: the entry pool, 1: decode), needed by
    `plan.routing == "random"`."""
    env = simpy.Environment()
    rec = _Recorder(len(requests), plan.pools)
    if plan.routing == "random" and route_u is None:
        raise ValueError("routing: random needs the replication's routing draws (route_u)")
    pools = {
        name: _Pool(
            env, p, rec, plan.routing,
            None if route_u is None else route_u[:, 1 if name == "decode" else 0],
            _route_tokens(name),
        )
        for name, p in plan.pools.items()
    }  # fmt: skip
    instances: list[_InstanceBase] = []
    emit = plan.decode_steps == "output-1"
    if "gpu" in pools:
        pool = pools["gpu"]
        pool.instances = [
            _Instance(pool, i, checker, first_at_prefill=True, emit_at_prefill=emit)
            for i in range(pool.plan.instances)
        ]
        instances += pool.instances
        entry = pool
    else:
        prefill, decode = pools["prefill"], pools["decode"]
        at_prefill = plan.first_token == "prefill"
        decode.instances = [
            _Instance(decode, i, checker, False, emit, plan.kv_link_gb_s, plan.kv_bytes_per_token)
            for i in range(decode.plan.instances)
        ]
        prefill.instances = [
            _PrefillInstance(prefill, i, checker, decode, at_prefill, emit)
            for i in range(prefill.plan.instances)
        ]
        instances += prefill.instances + decode.instances
        entry = prefill
    for inst in instances:
        env.process(inst.run())  # type: ignore[attr-defined]
    env.process(_Arrivals(requests, entry).run(env))
    env.run()

    unfinished = np.flatnonzero(np.isnan(rec.done))
    if unfinished.size:
        raise SimulationError(
            f"{unfinished.size} request(s) never finished (first: request {unfinished[0]}); "
            "the batched engine stalled"
        )
    end_s = float(rec.done.max()) if len(requests) else 0.0
    batch_mean: dict[str, float] = {}
    kv_mean: dict[str, float] = {}
    for name, pool in pools.items():
        t = rec.step_time[name]
        batch_mean[name] = rec.batch_time[name] / t if t > 0 else float("nan")
        cap = pool.plan.kv_capacity_tokens
        if math.isinf(cap) or end_s <= 0:
            kv_mean[name] = float("nan")
        else:
            total = 0.0
            for inst in pool.instances:
                total += inst.kv_integral + inst.kv_used * (end_s - inst.kv_since)
            kv_mean[name] = total / (cap * len(pool.instances) * end_s)
    transfers = np.array(rec.transfers, dtype=float).reshape(-1, 4)
    order = np.argsort(transfers[:, 0], kind="stable")
    transfers = transfers[order]
    stats = ServingStats(
        preemptions=rec.preemptions,
        recomputed_tokens=rec.recomputed_tokens,
        batch_size_mean=batch_mean,
        kv_use_mean=kv_mean,
        transfers=TransferLog(
            request=transfers[:, 0].astype(np.int64),
            link=transfers[:, 1].astype(np.int64),
            start_s=transfers[:, 2],
            end_s=transfers[:, 3],
        ),
    )
    pool_timelines = {
        name: PoolTimeline(p.plan.gpus, rec.wait[name], rec.busy[name]) for name, p in pools.items()
    }
    return Timeline(rec.first, rec.done, pool_timelines, serving=stats)
