"""Safe defaults: YAML only through the safe loader, no pickle or code loaded from specs or result
folders, and a local Ray instance started by distsim that listens on loopback only.

The Ray check starts distsim's own local session (`RaySession`, the `distsim run` path) in a
subprocess whose environment does NOT carry the test suite's loopback setting, then lists every
listening TCP socket of that session's processes (GCS, raylet, agents, workers, the driver) from
/proc — the one Ray session of this module.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from distsim_testkit import study_dict
from typer.testing import CliRunner

from distsim.cli import app
from distsim.errors import StoreError
from distsim.runner.store import read_rows

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

# Calls that build Python objects from data (or run code) and must never see a spec or a result.
UNSAFE_CALLS = {
    "yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.unsafe_load_all", "yaml.full_load",
    "yaml.full_load_all", "pickle.load", "pickle.loads", "pd.read_pickle", "pandas.read_pickle",
    "marshal.load", "marshal.loads", "shelve.open", "joblib.load", "dill.load", "dill.loads",
    "cloudpickle.load", "cloudpickle.loads", "eval", "exec", "compile", "__import__",
    "torch.load",
}  # fmt: skip
UNSAFE_MODULES = {"pickle", "marshal", "shelve", "dill", "joblib", "cloudpickle"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def unsafe_uses(source: str) -> list[str]:
    """Unsafe loader calls, imports of pickle-like modules, and np.load(allow_pickle=True)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in UNSAFE_CALLS:
                found.append(f"{name}() line {node.lineno}")
            if name.endswith("load") and any(
                k.arg == "allow_pickle"
                and not (isinstance(k.value, ast.Constant) and not k.value.value)
                for k in node.keywords
            ):
                found.append(f"{name}(allow_pickle=...) line {node.lineno}")
            if any(k.arg == "Loader" for k in node.keywords):
                found.append(f"{name}(Loader=...) line {node.lineno}")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names]
            module = getattr(node, "module", None)
            for m in [*names, module]:
                if m and m.split(".")[0] in UNSAFE_MODULES:
                    found.append(f"import {m} line {node.lineno}")
    return found


def test_the_scanner_finds_what_it_looks_for():
    bad = textwrap.dedent(
        """
        import pickle
        from yaml import CLoader
        yaml.load(text, Loader=yaml.Loader)
        yaml.unsafe_load(text)
        pd.read_pickle(p)
        np.load(p, allow_pickle=True)
        eval(s)
        """
    )
    assert len(unsafe_uses(bad)) == 7
    assert unsafe_uses("yaml.safe_load(t)\nnp.load(p, allow_pickle=False)\n") == []


def test_distsim_never_loads_yaml_unsafely_nor_pickle_nor_code():
    sources = sorted((ROOT / "distsim").rglob("*.py"))
    assert len(sources) > 20
    problems = {
        str(p.relative_to(ROOT)): found
        for p in sources
        if (found := unsafe_uses(p.read_text(encoding="utf-8")))
    }
    assert problems == {}
    # Every YAML read goes through yaml.safe_load (spec files, --set values, result folders).
    text = "".join(p.read_text(encoding="utf-8") for p in sources)
    assert "yaml.safe_load(" in text


def _unsafe_spec(marker: Path) -> str:
    return yaml.safe_dump(study_dict(name="x")).replace(
        "name: x", f"name: !!python/object/apply:os.system ['touch {marker}']"
    )


def test_unsafe_yaml_in_a_spec_or_a_result_folder_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    spec = tmp_path / "spec.yaml"
    spec.write_text(_unsafe_spec(marker), encoding="utf-8")
    for args in (["validate", spec], ["run", spec, "--out", tmp_path / "o"], ["report", tmp_path]):
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
        assert "invalid YAML" in result.stderr
    assert not marker.exists()
    assert not (tmp_path / "o").exists()


class _Payload:
    """Unpickling this touches a file: proof that something unpickled it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # noqa: D105
        return (Path.touch, (Path(self.path),))


def _planted_table(evil: bytes, *, in_pandas_metadata: bool, in_extension_type: bool) -> pa.Table:
    """One stored-looking row whose schema carries `evil` where pyarrow or pandas might unpickle
    it: the pandas metadata and/or a field declared as `arrow.py_extension_type`."""
    ext = {b"ARROW:extension:name": b"arrow.py_extension_type", b"ARROW:extension:metadata": evil}
    fields = [
        pa.field("scenario_id", pa.string()),
        pa.field("architecture", pa.string()),
        pa.field("replication", pa.int64()),
        pa.field("seed", pa.int64()),
        pa.field("payload", pa.binary(), metadata=ext if in_extension_type else None),
    ]
    meta = {b"distsim.param_columns": b"[]"} | ({b"pandas": evil} if in_pandas_metadata else {})
    return pa.table([["s"], ["monolithic"], [0], [7], [b"x"]], schema=pa.schema(fields, meta))


def test_result_files_with_pickled_payloads_are_never_unpickled(tmp_path):
    """pyarrow once unpickled `arrow.py_extension_type` metadata on read (CVE-2023-47248); a
    results folder from elsewhere must not run code. A pickle planted in the pandas metadata makes
    `replications.parquet` a one-line StoreError and a part file a skipped-with-a-note file; one
    planted as an extension type is read as the plain bytes it stores. Each through distsim's own
    reader, after a positive control showing the payload does run when unpickled."""
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Payload(str(marker)))
    pickle.loads(evil)  # positive control: unpickling the payload creates the marker
    assert marker.exists()
    marker.unlink()

    main = tmp_path / "main"
    main.mkdir()
    pq.write_table(_planted_table(evil, in_pandas_metadata=True, in_extension_type=True),
                   main / "replications.parquet")  # fmt: skip
    with pytest.raises(StoreError) as info:
        read_rows(main)
    message = str(info.value)
    assert "\n" not in message and "replications.parquet: unreadable" in message, message
    assert not marker.exists()

    part = tmp_path / "part"
    (part / "parts").mkdir(parents=True)
    planted = _planted_table(evil, in_pandas_metadata=True, in_extension_type=True)
    pq.write_table(planted, part / "parts" / "part-x-000001.parquet")
    rows, notes, read = read_rows(part)
    assert rows.empty and read == [] and len(notes) == 1 and "skipped" in notes[0], notes
    assert not marker.exists()

    for where in ("replications.parquet", "parts/part-x-000001.parquet"):
        folder = tmp_path / "ext" / where.replace("/", "-")
        (folder / "parts").mkdir(parents=True)
        planted = _planted_table(evil, in_pandas_metadata=False, in_extension_type=True)
        pq.write_table(planted, folder / where)
        rows, notes, _ = read_rows(folder)
        assert notes == [] and rows["payload"].tolist() == [b"x"], (where, notes)
        assert not marker.exists(), where


# ---------------------------------------------------------------- local Ray listens on loopback

_LISTENERS = textwrap.dedent(
    r"""
    import json, os, socket, sys

    def listening():
        '''inode -> (address, port) of every listening TCP socket in this network namespace.'''
        out = {}
        for name, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
            try:
                lines = open(name).read().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                f = line.split()
                if f[3] != "0A":
                    continue
                hex_ip, hex_port = f[1].split(":")
                raw = bytes.fromhex(hex_ip)
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                out[f[9]] = (socket.inet_ntop(family, raw), int(hex_port, 16))
        return out

    def sockets(pid):
        found = set()
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            return found
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                found.add(target[8:-1])
        return found

    def tree(roots):
        children = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = open(f"/proc/{entry}/stat").read()
                except OSError:
                    continue
                children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
        seen, todo = set(), list(roots)
        while todo:
            pid = todo.pop()
            if pid not in seen:
                seen.add(pid)
                todo.extend(children.get(pid, []))
        return seen

    def report(pids):
        table = listening()
        return sorted({table[i] for pid in pids for i in sockets(pid) if i in table})

    if sys.argv[1] == "selfcheck":  # the scanner sees a socket on every interface
        s = socket.socket(); s.bind(("0.0.0.0", 0)); s.listen()
        print(json.dumps({"listeners": report([os.getpid()])}))
        sys.exit(0)

    from distsim.runner.execute import RaySession
    notes = []
    with RaySession(workers=1, notes=notes) as session:
        import ray
        node = ray._private.worker._global_node
        roots = [p.process.pid for procs in node.all_processes.values() for p in procs]
        pids = tree(roots + [os.getpid()])
        print(json.dumps({
            "mode": session.info.mode,
            "nodes": [n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]],
            "gcs": node.address,
            "processes": len(pids),
            "listeners": report(pids),
        }))
    """
)


def _listeners(*args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    proc = subprocess.run(
        [sys.executable, "-c", _LISTENERS, *args],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def test_the_listener_scan_sees_a_socket_open_to_the_network():
    listeners = _listeners("selfcheck")["listeners"]
    assert [addr for addr, _ in listeners] == ["0.0.0.0"]


@pytest.mark.slow
def test_a_local_ray_started_by_distsim_listens_on_loopback_only():
    seen = _listeners("ray")
    assert seen["mode"] == "local"
    assert seen["nodes"] == ["127.0.0.1"]
    assert seen["gcs"].startswith("127.0.0.1:")
    assert seen["processes"] >= 4  # gcs, raylet, agents, a worker, the driver
    addresses = {addr for addr, _ in seen["listeners"]}
    assert len(seen["listeners"]) >= 3, seen
    assert addresses <= LOOPBACK, seen
    assert 8265 not in {port for _, port in seen["listeners"]}  # no dashboard


def test_the_docs_say_how_to_turn_on_token_authentication():
    text = (ROOT / "docs" / "scaling-out.md").read_text(encoding="utf-8")
    assert "RAY_AUTH_MODE=token" in text and "ray get-auth-token" in text


@pytest.mark.parametrize(
    "body",
    ['{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "not json", "[1, 2]", '{"nodes": NaN'],
)
def test_a_damaged_manifest_is_ignored_not_a_traceback(tmp_path, body):
    """manifest.json is read with json (no code); a damaged one counts as absent."""
    from distsim.runner.store import ResultStore

    (tmp_path / "manifest.json").write_text(body, encoding="utf-8")
    with ResultStore.open(tmp_path) as store:
        assert store.read_manifest() == {}
