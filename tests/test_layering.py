"""The architecture rules: the core's packages import downwards only, the core is Flower-free and
app-free, and client and server are apart."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "aclecg_core"


def _imported_modules(folder: Path) -> set[str]:
    """Dotted names of every absolute import in the Python files under ``folder``."""
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                assert node.level == 0, f"relative import in {path}"
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _violations(imported: set[str], forbidden: set[str]) -> set[str]:
    return {name for name in imported
            if any(name == bad or name.startswith(bad + ".") for bad in forbidden)}


@pytest.mark.parametrize(("package", "forbidden"), [
    ("aclecg_core", {"flwr", "client", "server", "simulation", "aclecg_cli", "deploy",
                     "aclecg_runtime"}),
    ("aclecg_runtime", {"flwr", "aclecg_core", "client", "server", "simulation", "aclecg_cli",
                        "deploy"}),
    ("aclecg_core/data", {"aclecg_core.method", "aclecg_core.evaluation", "aclecg_core.fed",
                          "aclecg_core.report"}),
    ("aclecg_core/method", {"aclecg_core.evaluation", "aclecg_core.fed", "aclecg_core.report"}),
    ("aclecg_core/evaluation", {"aclecg_core.fed", "aclecg_core.report"}),
    ("aclecg_core/report", {"aclecg_core.data", "aclecg_core.method", "aclecg_core.evaluation",
                            "aclecg_core.fed"}),
    ("client", {"server", "simulation", "aclecg_cli"}),
    ("server", {"client", "simulation", "aclecg_cli"}),
])
def test_package_does_not_import(package: str, forbidden: set[str]) -> None:
    assert _violations(_imported_modules(ROOT / package), forbidden) == set()


def test_core_is_a_handful_of_packages() -> None:
    loose = {p.name for p in CORE.glob("*.py")}
    packages = {p.name for p in CORE.iterdir() if (p / "__init__.py").is_file()}
    assert loose == {"__init__.py", "settings.py"}
    assert packages == {"data", "method", "evaluation", "fed", "report"}


def test_import_scan_sees_real_imports() -> None:
    assert {"flwr", "aclecg_core.fed.protocol"} <= {
        name.split(".")[0] if name.startswith("flwr") else name
        for name in _imported_modules(ROOT / "client")}
    assert _violations({"aclecg_core.method.model"}, {"aclecg_core.method"})
    assert not _violations({"aclecg_core.methods"}, {"aclecg_core.method"})
