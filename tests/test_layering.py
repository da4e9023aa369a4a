"""The architecture rules: aclecg_core is Flower-free and app-free; client and server are apart."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imported_top_levels(package: str) -> set[str]:
    names: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(("package", "forbidden"), [
    ("aclecg_core", {"flwr", "client", "server", "simulation", "aclecg_cli", "deploy"}),
    ("client", {"server", "simulation", "aclecg_cli"}),
    ("server", {"client", "simulation", "aclecg_cli"}),
])
def test_package_does_not_import(package: str, forbidden: set[str]) -> None:
    assert _imported_top_levels(package) & forbidden == set()


def test_import_scan_sees_real_imports() -> None:
    assert {"flwr", "aclecg_core"} <= _imported_top_levels("client")
