"""`--out s3://bucket/folder` against a real S3-compatible HTTP server (moto's, on 127.0.0.1).

The study runs on one local Ray session; because the folder is an object store, the tasks write
their own part files to it (`ResultStore.worker_sink`) and the driver commits them. The truth is
the same study run into a local folder: the rows must be identical, each exactly once, after a
first run, a resumed run and an interrupted one completed. Bad locations (a missing bucket, a
scheme no filesystem knows) are one line, exit 2, nothing written.

Credentials are dummies and the endpoint comes from `AWS_ENDPOINT_URL` (set before Ray starts, so
its workers inherit it, as a cluster's nodes would have their own).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest
import yaml
from distsim_testkit import frame, invoke, one_line_error, study_dict, tiny_study

from distsim.errors import StoreError
from distsim.runner.store import KEY, ResultStore, read_rows
from distsim.runner.study import load_result, run_study

pytestmark = pytest.mark.slow  # a Ray session and an HTTP server

BUCKET = "distsim-test"
ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """moto's S3 server on a free loopback port, the environment pointing at it, one bucket."""
    server_mod = pytest.importorskip("moto.server")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in [*ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update(ENV, AWS_ENDPOINT_URL=endpoint)
    try:
        pafs.S3FileSystem(endpoint_override=endpoint, allow_bucket_creation=True).create_dir(BUCKET)
        yield endpoint
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


@pytest.fixture(scope="module")
def session(s3, ray_session) -> None:
    """The Ray session, started after the environment names the server (workers inherit it)."""


def objects(endpoint: str, prefix: str) -> list[str]:
    fs = pafs.S3FileSystem(endpoint_override=endpoint)
    sel = pafs.FileSelector(f"{BUCKET}/{prefix}", recursive=True, allow_not_found=True)
    return sorted(i.path for i in fs.get_file_info(sel) if i.type == pafs.FileType.File)


def test_a_study_into_s3_resumes_and_stores_every_row_once(s3, session, tmp_path):
    spec = tiny_study("s3", replications=4)
    local = run_study(spec, out_dir=tmp_path / "local", progress=False)
    truth = frame(local.replications)
    uri = f"s3://{BUCKET}/study"

    # An interrupted run: only replications 0-1 stored, then the full study completes it.
    first = run_study(spec, out_dir=uri, replications=2, progress=False)
    assert first.rows_simulated == len(truth) // 2
    done = run_study(spec, out_dir=uri, progress=False)
    assert (done.rows_reused, done.rows_simulated) == (len(truth) // 2, len(truth) // 2)
    pd.testing.assert_frame_equal(frame(done.replications), truth, check_exact=True)
    # The tasks wrote the parts (the probe they check the folder by is there).
    names = objects(s3, "study")
    assert f"{BUCKET}/study/rows/_probe" in names
    assert any("/rows/scenario_id=" in n and "/part-" in n for n in names)
    for f in ("spec.yaml", "manifest.json", "replications.parquet", "summary.csv", "report.md"):
        assert f"{BUCKET}/study/{f}" in names, f
    assert f"{BUCKET}/study/_lease.json" not in names  # released at the end

    # Resumed: nothing simulated; every row once, on the store and in the export.
    again = run_study(spec, out_dir=uri, progress=False)
    assert (again.rows_reused, again.rows_simulated) == (len(truth), 0)
    stored, notes, _ = read_rows(uri)
    assert not notes and len(stored) == len(truth) and not stored.duplicated(KEY).any()
    fs = pafs.S3FileSystem(endpoint_override=s3)
    with fs.open_input_file(f"{BUCKET}/study/replications.parquet") as f:
        exported = pd.read_parquet(f)
    pd.testing.assert_frame_equal(frame(exported), truth, check_exact=True)
    # `distsim report` reads it back from the bucket.
    pd.testing.assert_frame_equal(frame(load_result(uri).replications), truth, check_exact=True)
    report = invoke("report", uri)
    assert report.exit_code == 0, report.output


def test_a_second_run_on_the_same_prefix_is_refused_while_the_lease_is_fresh(s3, session):
    uri = f"s3://{BUCKET}/leased"
    with ResultStore.open(uri), pytest.raises(StoreError, match="another distsim run is using"):
        ResultStore.open(uri)
    with ResultStore.open(uri):  # released
        pass


def test_a_missing_bucket_or_an_unknown_scheme_is_one_line_and_writes_nothing(
    s3, session, tmp_path
):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(tiny_study("bad")), encoding="utf-8")
    one_line_error(invoke("run", spec, "--out", "s3://no-such-bucket/x"),  # not even the plan
                   "no bucket 'no-such-bucket'")  # fmt: skip
    one_line_error(invoke("run", spec, "--out", "nosuchfs://x/y", "--quiet"),
                   "not a usable location")  # fmt: skip
    one_line_error(invoke("run", spec, "--out", f"s3://{BUCKET}", "--quiet"),
                   "give a folder inside the bucket")  # fmt: skip
    one_line_error(invoke("run", spec, "--out", "s3://", "--quiet"),  # pathlib makes it 's3:'
                   "give a folder inside the bucket")  # fmt: skip
    assert not (Path.cwd() / "s3:").exists()
    fs = pafs.S3FileSystem(endpoint_override=s3)
    assert fs.get_file_info("no-such-bucket").type == pafs.FileType.NotFound
    assert objects(s3, "x") == []


# ---------------------------------------------------------------- distsim select into a bucket


def select_spec(tmp_path: Path, **select: object) -> Path:
    """A selection among a monolithic and the 4-GPU prefill/decode splits (the CLI test's)."""
    data = study_dict(duration_s=40.0, replications=4, architectures=None, baseline=None,
                      slo={"ttft_s": 0.5}, candidates={"disaggregated_splits": {"gpus": 4}},
                      select=select)  # fmt: skip
    path = tmp_path / "select.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in data.items() if v is not None}))
    return path


def read_object(endpoint: str, key: str) -> bytes:
    with pafs.S3FileSystem(endpoint_override=endpoint).open_input_stream(f"{BUCKET}/{key}") as f:
        return f.read()


@pytest.mark.parametrize(
    "select",
    [
        {"objective": "e2e_mean_s", "indifference": 0.02},
        {"objective": "goodput_rps_per_gpu", "indifference": 0.1,
         "goodput": {"low_rps_per_gpu": 0.5, "high_rps_per_gpu": 8.0, "rel_precision": 0.05}},
    ],
    ids=["sequential", "goodput-search"],
)  # fmt: skip
def test_select_into_s3_gives_the_local_answer_reruns_nothing_and_reports(
    s3, session, tmp_path, select
):
    """`distsim select --out s3://…`, sequential and with the goodput search: the same answer,
    selection.json and rows as into a local folder; a rerun simulates nothing; `distsim report`
    reads the selection back from the bucket."""
    spec = select_spec(tmp_path, **select)
    local = invoke("select", spec, "--out", tmp_path / "local", "--quiet")
    assert local.exit_code == 0, local.output
    prefix = f"select-{select['objective']}"
    uri = f"s3://{BUCKET}/{prefix}"
    first = invoke("select", spec, "--out", uri, "--quiet")
    assert first.exit_code == 0, first.output
    answer = local.output.splitlines()[0]
    assert first.output.splitlines()[0] == answer
    names = objects(s3, prefix)
    for f in ("spec.yaml", "manifest.json", "selection.json", "report.md", "replications.parquet"):
        assert f"{BUCKET}/{prefix}/{f}" in names, f
    assert any(n.endswith(".png") for n in names)
    assert not any(n.startswith(f"{BUCKET}/{prefix}/.") for n in names)  # no temporary file
    assert json.loads(read_object(s3, f"{prefix}/selection.json")) == json.loads(
        (tmp_path / "local" / "selection.json").read_text()
    )
    stored, notes, _ = read_rows(uri)
    truth, _, _ = read_rows(tmp_path / "local")
    assert not notes and not stored.duplicated(KEY).any()
    pd.testing.assert_frame_equal(frame(stored), frame(truth), check_exact=True)

    again = invoke("select", spec, "--out", uri, "--quiet")
    assert again.exit_code == 0, again.output
    assert again.output.splitlines()[0] == answer and "0 rows simulated" in again.output
    report = invoke("report", uri)
    assert report.exit_code == 0, report.output
    assert report.output.splitlines()[0] == answer
