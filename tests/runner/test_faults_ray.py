"""Dead workers and dead nodes: a study finishes with the numbers an undisturbed run gives.

One Ray cluster for the module (`ray.cluster_utils.Cluster` on 127.0.0.1, head with one CPU),
joined once by this process; studies use that session. Every task announces itself by touching a
marker file named after its first unit, its process id and its node, then sleeps briefly, so the
test can strike while work is in flight:

- worker death: SIGKILL, from outside, the Ray worker process running a task (checked to be a
  worker of this cluster's raylet, never anything else);
- node death: a second node joins, and is removed (its raylet and workers killed, not drained)
  while it runs a task; the study finishes on the head.

tests/test_runner.py covers a worker that exits by itself inside a task (`os._exit`); these
kill from outside, mid-task, and compare every number with an undisturbed run.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from distsim_testkit import frame, tiny_study

import distsim.runner.execute as execute
from distsim.runner.store import KEY, read_rows
from distsim.runner.study import run_study

pytestmark = pytest.mark.slow  # fault tests: real kills, clusters and file systems

RATE = "workload.arrival.rate_rps"
STRIKE_TIMEOUT_S = 120.0


def tiny() -> dict:
    return tiny_study("faults", 6)


def announcing(marks: Path, pause_s: float) -> Callable[..., Any]:
    """A task body that leaves `<scenario>-<replication>--<pid>--<node id>` in `marks`, pauses,
    then runs the real batch. Defined here, shipped to the workers by value."""
    marks_dir = str(marks)

    def announced(scenarios: Any, units: Any, *rest: Any, **kwargs: Any) -> Any:
        import os
        import pathlib
        import time

        import ray

        from distsim.runner.task import run_batch

        node = ray.get_runtime_context().get_node_id()
        key = f"{units[0].scenario_id}-{units[0].replication}"
        (pathlib.Path(marks_dir) / f"{key}--{os.getpid()}--{node}").touch()
        time.sleep(pause_s)
        return run_batch(scenarios, units, *rest, **kwargs)

    return announced


def parse_mark(path: Path) -> tuple[str, int, str]:
    key, pid, node = path.name.split("--")
    return key, int(pid), node


def descendants(pid: int) -> set[int]:
    """Process ids below `pid` (from /proc: children of children ...)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def raylet_pid(node: Any) -> int:
    return node.all_processes["raylet"][0].process.pid


class Striker(threading.Thread):
    """Waits for the first marker that `pick` accepts, then calls `strike` with it once."""

    def __init__(self, marks: Path, pick: Callable[[Path], bool], strike: Callable[[Path], None]):
        super().__init__(daemon=True)
        self.marks, self.pick, self.strike = marks, pick, strike
        self.hit: Path | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        deadline = time.monotonic() + STRIKE_TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                for mark in sorted(self.marks.iterdir()):
                    if self.pick(mark):
                        self.strike(mark)
                        self.hit = mark
                        return
                time.sleep(0.01)
        except BaseException as exc:  # reported by the test
            self.error = exc


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
    )
    ray.init(address=c.address, logging_level="ERROR", log_to_driver=False)
    try:
        assert {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]} == {"127.0.0.1"}
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def reference(cluster, tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("ref") / "out"
    result = run_study(tiny(), out_dir=out, progress=False)
    assert result.complete and not result.failures
    return frame(result.replications)


# ---------------------------------------------------------------- worker death


@pytest.mark.parametrize("parts", ["driver writes", "tasks write"])
def test_a_worker_killed_mid_task_is_retried_and_the_numbers_do_not_change(
    cluster, reference, tmp_path, monkeypatch, parts
):
    """With "tasks write", each task writes its own part files and the driver commits them
    (`ResultStore.worker_sink`); the killed attempt's retry writes under a new name, and only
    the parts the driver committed count: every row exactly once."""
    monkeypatch.setenv("DISTSIM_WORKER_PARTS", "1" if parts == "tasks write" else "0")
    marks = tmp_path / "marks"
    marks.mkdir()
    ours = descendants(raylet_pid(cluster.head_node))

    def kill(mark: Path) -> None:
        _, pid, _ = parse_mark(mark)
        assert pid in descendants(raylet_pid(cluster.head_node)) | ours  # a worker of ours
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert f.read().startswith(b"ray::announced")  # a Ray worker, inside our task
        os.kill(pid, signal.SIGKILL)

    striker = Striker(marks, lambda m: True, kill)
    monkeypatch.setattr(execute, "run_batch", announcing(marks, pause_s=0.4))
    striker.start()
    result = run_study(tiny(), out_dir=tmp_path / "out", progress=False)
    striker.join(timeout=5)
    assert striker.error is None and striker.hit is not None
    key, pid, _ = parse_mark(striker.hit)
    assert not alive(pid)
    # The killed task ran again, in another worker process.
    reruns = [parse_mark(m) for m in marks.iterdir() if parse_mark(m)[0] == key]
    assert len(reruns) >= 2 and {p for _, p, _ in reruns} != {pid}
    assert result.complete and not result.failures
    assert not result.replications.duplicated(KEY).any()
    pd.testing.assert_frame_equal(frame(result.replications), reference, check_exact=True)
    on_disk, _, _ = read_rows(tmp_path / "out")
    assert len(on_disk) == len(reference) and not on_disk.duplicated(KEY).any()
    # The tasks were given the folder (the probe they check it by exists) or not.
    assert (tmp_path / "out" / "rows" / "_probe").exists() == (parts == "tasks write")


# ---------------------------------------------------------------- node death


def test_a_node_removed_mid_study_and_the_study_finishes_on_the_head(
    cluster, reference, tmp_path, monkeypatch
):
    import ray

    node = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    deadline = time.monotonic() + 60
    while len([n for n in ray.nodes() if n["Alive"]]) < 2:
        assert time.monotonic() < deadline, "the second node did not join"
        time.sleep(0.1)
    head_id = cluster.head_node.node_id
    worker_id = node.node_id
    assert {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]} == {"127.0.0.1"}
    node_pids = {raylet_pid(node)} | descendants(raylet_pid(node))

    marks = tmp_path / "marks"
    marks.mkdir()
    striker = Striker(
        marks,
        lambda m: parse_mark(m)[2] == worker_id,
        lambda m: cluster.remove_node(node, allow_graceful=False),
    )
    monkeypatch.setattr(execute, "run_batch", announcing(marks, pause_s=0.4))
    striker.start()
    result = run_study(tiny(), out_dir=tmp_path / "out", progress=False)
    striker.join(timeout=5)
    assert striker.error is None and striker.hit is not None
    assert result.nodes == 2  # the study started on two nodes ...
    assert not any(alive(p) for p in node_pids)  # ... and the worker node is gone
    key, _, _ = parse_mark(striker.hit)
    # The task the node was running ran again on the head.
    assert any(parse_mark(m)[0] == key and parse_mark(m)[2] == head_id for m in marks.iterdir())
    assert result.complete and not result.failures
    pd.testing.assert_frame_equal(frame(result.replications), reference, check_exact=True)
