"""Driver death: `distsim run` SIGKILLed several times at random points, rerun each time.

The drivers are subprocesses (`python -m distsim run SPEC --address ...`) that join one two-node
Ray cluster started by this module (`ray.cluster_utils.Cluster`, loopback): a killed driver leaves
the cluster running, as on a real cluster, and the next run joins it again. Each attempt is killed
at a random (seeded) point of the remaining work — once its stored rows pass a random target,
plus a random delay that lands between two writes or inside one — and a last attempt is killed
while it writes its final files (consolidation, tables, report).

At the end the results must equal an undisturbed run exactly, hold every (scenario,
architecture, replication) exactly once, and every file in the folder must be whole.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from distsim_testkit import frame, study_dict

from distsim.runner.plan import plan_study
from distsim.runner.store import KEY, read_rows
from distsim.spec.study import validate_study

pytestmark = pytest.mark.slow  # fault tests: real kills, clusters and file systems

ROOT = Path(__file__).resolve().parents[2]
RATE = "workload.arrival.rate_rps"
KILLS = 3  # mid-study kills, then one more during the final writes
# The kill points; fixed so CI sees the same schedule every time (DISTSIM_KILL_SEED varies it
# to measure how often the last kill lands inside the final writes).
SEED = int(os.environ.get("DISTSIM_KILL_SEED", "20261129"))
FINAL_WRITE_OUTCOMES: collections.Counter[str] = collections.Counter()


def study() -> dict:
    """~110-140k simulated requests per (scenario, replication), ~0.1 s each: a few seconds of
    simulation in all, so parts land one task at a time and a kill can fall between them."""
    return study_dict(name="driver", duration_s=1800.0, warmup_s=60.0, replications=30,
                      sweep={RATE: [30.0, 40.0]})  # fmt: skip


def rows_on_disk(out: Path) -> int:
    try:
        rows, _, _ = read_rows(out)
    except Exception:  # a file being renamed this instant: count again next poll
        return -1
    return len(rows)


def start(spec: Path, out: Path, address: str, worker_parts: str = "0") -> subprocess.Popen:
    """`distsim run` joining the cluster; `worker_parts` "1": the tasks write their own part
    files and the driver commits them (`ResultStore.worker_sink`), "0": the driver writes."""
    cmd = [sys.executable, "-m", "distsim", "run", str(spec), "--out", str(out),
           "--address", address, "--quiet"]  # fmt: skip
    env = {**os.environ, "DISTSIM_WORKER_PARTS": worker_parts}
    return subprocess.Popen(
        cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=env,
    )  # fmt: skip


def sigkill(proc: subprocess.Popen) -> str:
    """SIGKILL the driver and anything it started (its own process group, nothing else); returns
    what it wrote to stderr. Its return code then tells whether it was killed or had exited."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    return err.decode(errors="replace")


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
    )
    c.add_node(num_cpus=1)  # two nodes: with worker_parts "1" tasks write parts on both
    ray.init(address=c.address, logging_level="ERROR", log_to_driver=False)
    try:
        deadline = time.monotonic() + 60
        while len([n for n in ray.nodes() if n["Alive"]]) < 2:
            assert time.monotonic() < deadline, "the second node did not join"
            time.sleep(0.1)
        assert {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]} == {"127.0.0.1"}
    finally:
        ray.shutdown()  # the drivers are the subprocesses
    yield c
    c.shutdown()


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "driver.yaml"
    path.write_text(yaml.safe_dump(study(), sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reference(cluster, spec, tmp_path_factory) -> pd.DataFrame:
    """The undisturbed run (the driver writes), once for both tests: the rows do not depend on
    who writes them, so each killed-and-resumed run must equal this one."""
    out = tmp_path_factory.mktemp("ref") / "out"
    ref = start(spec, out, cluster.address, "0")
    _, err = ref.communicate(timeout=600)
    assert ref.returncode == 0, err.decode()
    return frame(pd.read_parquet(out / "replications.parquet"))


@pytest.mark.parametrize("worker_parts", ["0", "1"], ids=["driver-writes", "tasks-write"])
def test_a_driver_killed_at_random_points_resumes_to_the_undisturbed_result(
    cluster, spec, reference, tmp_path, worker_parts
):
    """With tasks writing their own parts, a killed driver leaves parts no commit names (tasks
    that finished after it died); the next run checks and commits them, so it may reuse more
    rows than were committed at the kill, but never counts one twice."""
    plan = plan_study(validate_study(study()))
    rng = random.Random(SEED)
    assert len(reference) == plan.rows

    out = tmp_path / "killed"
    history: list[tuple[int, int, float, int]] = []  # rows before, target, delay, rows at kill
    for attempt in range(KILLS + 1):
        before = max(rows_on_disk(out), 0) if out.exists() else 0
        if attempt < KILLS:  # a random point of the remaining work (at most half of it) ...
            target = before + rng.randint(1, max(1, (plan.rows - before) // 2))
        else:  # ... and, last, once every row is stored: while the run writes its final files
            target = plan.rows
        proc = start(spec, out, cluster.address, worker_parts)
        try:
            deadline = time.monotonic() + 300
            while proc.poll() is None and rows_on_disk(out) < target:
                assert time.monotonic() < deadline, "no progress"
                time.sleep(0.002)
            delay = rng.uniform(0.0, 0.1)
            time.sleep(delay)  # anywhere between two writes, or inside one
            at_kill = rows_on_disk(out)
        finally:
            err = sigkill(proc)
        history.append((before, target, delay, at_kill))
        outcome = "killed" if proc.returncode == -signal.SIGKILL else f"exit {proc.returncode}"
        print(  # shown with pytest -s
            f"attempt {attempt}: rows {before} -> target {target}, +{delay:.2f} s, "
            f"{outcome} at {at_kill} rows"
        )
        stored_after = rows_on_disk(out)  # nothing writes now: a stable count
        if attempt < KILLS:  # mid-study: the kill must land before the last row is stored
            assert proc.returncode == -signal.SIGKILL, (outcome, err)
            assert 0 <= stored_after < plan.rows, history
            continue
        # The final writes: killed once every row was stored (the loop waited for that), so the
        # kill landed in consolidation, tables or report; or the run finished first, cleanly.
        if proc.returncode == -signal.SIGKILL:
            assert stored_after == plan.rows, history
            FINAL_WRITE_OUTCOMES["killed during the final writes"] += 1
        else:
            assert proc.returncode == 0, (outcome, err)
            assert "Traceback" not in err, err
            FINAL_WRITE_OUTCOMES["finished before the kill"] += 1
        print(f"final-write outcomes so far: {dict(FINAL_WRITE_OUTCOMES)}")

    saved = rows_on_disk(out)
    final = start(spec, out, cluster.address, worker_parts)
    _, err = final.communicate(timeout=600)
    assert final.returncode == 0, err.decode()
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "complete"
    if worker_parts == "0":
        assert manifest["rows_reused"] == saved
    else:  # + rows of parts written after the kill, committed by this run
        assert manifest["rows_reused"] >= saved
    assert manifest["rows_simulated"] == plan.rows - manifest["rows_reused"]

    rows = frame(pd.read_parquet(out / "replications.parquet"))
    assert len(rows) == plan.rows and not rows.duplicated(KEY).any()  # each exactly once
    pd.testing.assert_frame_equal(rows, reference, check_exact=True)

    # No corrupt, temporary, set-aside or leftover part file.
    assert not (out / "parts").exists()
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name or ".corrupt-" in p.name]
    for p in out.rglob("*.parquet"):
        pq.read_table(p, page_checksum_verification=True)
    for p in out.glob("*.json"):
        json.loads(p.read_text(encoding="utf-8"))
    yaml.safe_load((out / "spec.yaml").read_text(encoding="utf-8"))
    for p in out.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.read_bytes()[-8:-4] == b"IEND"
