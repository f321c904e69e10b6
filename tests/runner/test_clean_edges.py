"""Clean edges of `distsim run`: an unreachable `--address` is one line, fast, with nothing
written; Ctrl-C at any moment (Ray starting, running, shutting down) leaves no process behind.

Each run is a `python -m distsim run` subprocess in a session of its own; Ctrl-C is SIGINT to its
process group, as a terminal sends it. "No process behind" is checked by scanning /proc for any
process of that session (Ray's processes stay in the driver's session) and, as a second net, for
Ray processes whose command line names the run's temporary Ray folder.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from distsim_testkit import part_files, study_dict

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spec(tmp_path: Path, replications: int = 400) -> Path:
    path = tmp_path / "spec.yaml"
    spec = study_dict(name="edges", duration_s=30.0, warmup_s=2.0, replications=replications)
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def _session_pids(sid: int) -> list[int]:
    """Live (not zombie) processes whose session is `sid`."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, session = fields[0], int(fields[3])
        if session == sid and state != "Z":
            out.append(int(entry))
    return out


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "distsim", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_an_unreachable_address_is_one_line_exit_2_and_writes_nothing(tmp_path):
    port = _free_port()  # nothing listens there
    out = tmp_path / "never"
    t0 = time.monotonic()
    done = _run_cli("run", str(_spec(tmp_path)), "--out", str(out), "--address",
                    f"127.0.0.1:{port}", "--quiet")  # fmt: skip
    elapsed = time.monotonic() - t0
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        f"error: no Ray cluster at 127.0.0.1:{port} (connection refused): start one with "
        "'ray start --head' or drop --address"
    )
    assert done.stdout == ""
    assert not out.exists()
    assert elapsed < 30, elapsed
    # RAY_ADDRESS is the same as --address.
    env_done = subprocess.run(
        [sys.executable, "-m", "distsim", "run", str(_spec(tmp_path)), "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "RAY_ADDRESS": f"127.0.0.1:{port}"},
    )  # fmt: skip
    assert env_done.returncode == 2 and "no Ray cluster at" in env_done.stderr
    assert not out.exists()


def _ray_started(sid: int, out: Path) -> bool:
    """A Ray process (gcs_server or raylet) runs in the session."""
    for pid in _session_pids(sid):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"gcs_server" in cmd or b"raylet" in cmd:
            return True
    return False


def _running(sid: int, out: Path) -> bool:
    """Rows are arriving: a part file exists."""
    return bool(part_files(out))


def _shutting_down(sid: int, out: Path) -> bool:
    """The simulation is over (manifest says so) and the report is not written yet: Ray is
    stopping on its background thread while the rows are aggregated."""
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("status") == "complete" and not (out / "summary.csv").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("moment", "when", "replications"),
    [("ray starting", _ray_started, 400), ("running", _running, 400),
     ("shutting down", _shutting_down, 40)],
)  # fmt: skip
def test_ctrl_c_at_any_moment_leaves_no_process_behind(
    tmp_path: Path, moment: str, when: Callable[[int, Path], bool], replications: int
) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "distsim", "run", str(_spec(tmp_path, replications)), "--out",
         str(out), "--workers", "1", "--quiet"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    sid = proc.pid
    try:
        deadline = time.monotonic() + 240
        while not when(sid, out):
            if proc.poll() is not None:
                pytest.skip(f"the run finished before the moment '{moment}' was seen")
            assert time.monotonic() < deadline, f"never saw '{moment}'"
            time.sleep(0.02)
        os.killpg(sid, signal.SIGINT)  # Ctrl-C at the terminal
        t0 = time.monotonic()
        proc.communicate(timeout=60)
        while _session_pids(sid) and time.monotonic() - t0 < 10:
            time.sleep(0.1)
        left = _session_pids(sid)
        assert not left, f"{moment}: processes left 10 s after Ctrl-C: {left}"
    finally:
        with_left = _session_pids(sid)
        if with_left:
            os.killpg(sid, signal.SIGKILL)
    assert proc.returncode in (0, 130), proc.stderr


class _RayThatCannotStart:
    """Stands in for the `ray` module: `init` fails as a start that times out does."""

    def __init__(self) -> None:
        self.shutdowns = 0

    def is_initialized(self) -> bool:
        return False

    def init(self, **_: object) -> None:
        raise RuntimeError("Failed to start the GCS: timed out after 60 s\n  File ...\nmore")

    def shutdown(self) -> None:
        self.shutdowns += 1


def test_a_local_ray_that_cannot_start_is_one_line_and_stops_what_it_started(monkeypatch):
    from distsim.errors import DistsimError
    from distsim.runner import execute

    fake = _RayThatCannotStart()
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(execute, "_import_ray", lambda local: fake)
    with pytest.raises(DistsimError) as caught, execute.RaySession(workers=1, notes=[]):
        pass
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("could not start a local Ray instance (RuntimeError: Failed to start")
    assert fake.shutdowns == 1  # whatever the failed start launched is shut down
