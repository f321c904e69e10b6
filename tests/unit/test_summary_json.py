"""summary.json is written a piece at a time (the per-cell tables in row chunks), never whole in
memory; the file must be the JSON document it always was. Truth: the document built whole, as
the report wrote it before (json.dumps of the payload, each table as pandas writes it)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

import distsim.report.markdown as md
from distsim.runner.store import atomic_write_chunks


def test_the_pieces_join_into_the_document_built_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(md, "_JSON_ROWS", 7)  # several chunks, the last one short
    rng = np.random.default_rng(3)
    summary = pd.DataFrame({"scenario_id": [f"s{i % 5}" for i in range(30)],
                            "estimate": rng.lognormal(size=30), "n": np.arange(30),
                            "flags": ["", "run_too_short"] * 15})  # fmt: skip
    summary.loc[4, "estimate"] = np.nan
    detail = summary.iloc[:7]  # exactly one chunk
    empty = summary.iloc[:0]
    payload = {"study": "s", "summary": md._TABLE_MARK.format("summary"), "x": [1, 2],
               "comparisons": md._TABLE_MARK.format("comparisons"),
               "diagnostics": md._TABLE_MARK.format("diagnostics"), "plots": {"cdf": {}}}  # fmt: skip
    tables = (("summary", summary), ("comparisons", detail), ("diagnostics", empty))
    path = tmp_path / "summary.json"
    atomic_write_chunks(path, md._json_chunks(payload, tables))
    whole = json.dumps(payload, indent=1)
    for name, frame in tables:
        text = frame.to_json(orient="records") if len(frame) else "[]"
        whole = whole.replace(json.dumps(md._TABLE_MARK.format(name)), text, 1)
    assert path.read_text(encoding="utf-8") == whole
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert len(doc["summary"]) == 30 and doc["summary"][4]["estimate"] is None
    assert doc["diagnostics"] == [] and doc["x"] == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary file left


def test_csv_pieces_are_the_text_pandas_writes_whole(tmp_path, monkeypatch):
    import distsim.runner.rowfiles as rowfiles
    from distsim.runner.store import ResultStore

    monkeypatch.setattr(rowfiles, "CSV_ROWS", 4)
    frame = pd.DataFrame({"a": np.arange(10) / 3, "b": ["x", "y,z"] * 5})
    for rows in (frame, frame.iloc[:4], frame.iloc[:0]):
        assert b"".join(rowfiles.csv_chunks(rows)).decode() == rows.to_csv(index=False)
    with ResultStore.open(tmp_path) as store:
        store.write_csv("t.csv", frame)
    assert (tmp_path / "t.csv").read_text() == frame.to_csv(index=False)
