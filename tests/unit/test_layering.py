"""Imports run one way, down the data flow: spec -> workload -> sim -> stats -> runner -> report.

Read from the source (no import needed), so a module that reaches up the flow — the spec calling
an engine, an engine reading the runner — fails here by name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "distsim"

# What each subpackage may import from distsim besides itself and distsim.errors.
ALLOWED = {
    # The spec reads the data files it names (traces, empirical columns) to validate them.
    "spec": {"distsim.workload.trace_files"},
    "workload": {"distsim.spec"},
    "sim": {"distsim.spec", "distsim.workload"},
    "stats": {"distsim.spec", "distsim.workload.streams"},
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("distsim"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("distsim")}
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_subpackage_imports_only_what_is_above_it(package: str) -> None:
    own = (f"distsim.{package}", "distsim.errors", *ALLOWED[package])
    wrong = {
        f"{path.name}: {module}"
        for path in sorted((PACKAGE / package).glob("*.py"))
        for module in _imports(path)
        if not any(module == ok or module.startswith(ok + ".") for ok in own)
    }
    assert not wrong, sorted(wrong)
