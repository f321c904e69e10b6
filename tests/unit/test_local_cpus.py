"""How many CPUs a local Ray instance gets when `--workers` is not given: one per start cost of
expected work, capped at the cores. The core count is set here (16, then 2), so the rule is told
apart from the cap on any machine."""

from __future__ import annotations

import math

import pytest

import distsim.runner.execute as execute
from distsim.runner.execute import WORKER_START_CPU_S, local_cpus


@pytest.fixture(params=[16, 2], ids=lambda n: f"{n}-cores")
def cores(request, monkeypatch) -> int:
    monkeypatch.setattr(execute.os, "cpu_count", lambda: request.param)
    return request.param


def test_workers_given_are_used_as_is(cores: int) -> None:
    assert local_cpus(3, 0.0) == 3
    assert local_cpus(1, 1e9) == 1
    assert local_cpus(40, None) == 40  # more than the cores: the user's choice stands


def test_one_worker_per_start_cost_of_expected_work_capped_at_the_cores(cores: int) -> None:
    assert local_cpus(None, 0.0) == 1
    assert local_cpus(None, 0.9 * WORKER_START_CPU_S) == 1
    assert local_cpus(None, 1.0 * WORKER_START_CPU_S) == 2
    assert local_cpus(None, 2.5 * WORKER_START_CPU_S) == min(3, cores)
    assert local_cpus(None, 7.99 * WORKER_START_CPU_S) == min(8, cores)
    assert local_cpus(None, 1e9) == cores


def test_unknown_work_gets_every_core(cores: int) -> None:
    assert local_cpus(None, None) == cores
    assert local_cpus(None, math.inf) == cores
    assert local_cpus(None, math.nan) == cores


def test_an_unknown_core_count_counts_as_one(monkeypatch) -> None:
    monkeypatch.setattr(execute.os, "cpu_count", lambda: None)
    assert local_cpus(None, None) == 1 and local_cpus(None, 1e9) == 1
