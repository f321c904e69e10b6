"""How many CPUs a local Ray instance gets when `--workers` is not given."""

from __future__ import annotations

import math
import os

from distsim.runner.execute import WORKER_START_CPU_S, local_cpus


def test_workers_given_are_used_as_is() -> None:
    assert local_cpus(3, 0.0) == 3
    assert local_cpus(1, 1e9) == 1


def test_one_worker_per_start_cost_of_expected_work_capped_at_the_cores() -> None:
    cores = os.cpu_count() or 1
    assert local_cpus(None, 0.0) == 1
    assert local_cpus(None, 0.9 * WORKER_START_CPU_S) == 1
    assert local_cpus(None, 1.0 * WORKER_START_CPU_S) == min(2, cores)
    assert local_cpus(None, 2.5 * WORKER_START_CPU_S) == min(3, cores)
    assert local_cpus(None, 1e9) == cores


def test_unknown_work_gets_every_core() -> None:
    cores = os.cpu_count() or 1
    assert local_cpus(None, None) == cores
    assert local_cpus(None, math.inf) == cores
    assert local_cpus(None, math.nan) == cores
