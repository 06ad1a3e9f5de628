"""The layering rule: storage/ and cluster/ never import pipelines/ or each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"storage": {"pipelines", "cluster"}, "cluster": {"pipelines", "storage"}}
PACKAGE = "gexplain"


def _folder(module: str) -> str:
    """The repository folder a module lives in: ``gexplain.storage.x`` -> ``storage``."""
    parts = module.split(".")
    return parts[1] if parts[0] == PACKAGE and len(parts) > 1 else parts[0]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(_folder(a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(_folder(node.module))
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layering(package):
    bad = {}
    for path in (ROOT / package).rglob("*.py"):
        hit = _imports(path) & FORBIDDEN[package]
        if hit:
            bad[str(path.relative_to(ROOT))] = sorted(hit)
    assert not bad, f"{package}/ must not import {sorted(FORBIDDEN[package])}: {bad}"
