"""The documentation site builds with no warnings, and its spec reference covers every field.

`mkdocs build --strict` turns every warning (a broken link or anchor, a page missing from the nav,
a docstring mkdocstrings cannot read) into a failure. The `test` extra installs the `docs` extra,
so CI (the README's test command) always builds the site; without mkdocs the test is skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_docs_build_strictly_and_list_every_top_level_field(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    page = (site / "spec-reference" / "index.html").read_text(encoding="utf-8")
    from distsim.spec.study import Study

    for field in Study.model_fields:
        assert f"<code>{field}</code>" in page, field


def test_the_readme_is_a_front_page_and_ci_runs_its_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    assert "../shared" not in readme  # a clone has no such folder
    ci_command = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert ci_command in readme, ci_command
    assert 'python -m pytest -m "not slow"' in readme  # the quick check is named
