"""The packages import each other in one direction only, as docs/architecture.md says:
a rule that a test does not hold is a rule the next change breaks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.harness import ROOT

# Each package, and what it may not import (any module, at any depth, lazily or not).
FORBIDDEN: dict[str, frozenset[str]] = {
    # The publishing library is the floor: a producer imports it and nothing else of ours,
    # and no web framework comes with it.
    "realtime": frozenset(
        {"core", "edge", "domain", "api", "workers", "demo", "cli", "stripe_local"}
        | {"fastapi", "starlette", "uvicorn", "websockets", "celery"}
    ),
    "core": frozenset({"edge", "domain", "api", "workers", "demo", "cli", "stripe_local"}),
    # edge/app.py may import demo/: it mounts the demo, and imports it only when it is on.
    "edge": frozenset({"domain", "api", "workers", "cli", "stripe_local"}),
    "domain": frozenset(
        {"edge", "api", "workers", "demo", "cli", "fastapi", "starlette", "celery"}
    ),
    "api": frozenset({"edge", "workers", "demo", "cli"}),
    "workers": frozenset({"edge", "api", "demo", "cli"}),
    "demo": frozenset({"domain", "api", "workers", "cli"}),
    "stripe_local": frozenset({"realtime", "edge", "domain", "api", "workers", "demo", "cli"}),
    # cli is installed: it may not reach for what is not (tools/, bench/, tests/).
    "cli": frozenset({"tools", "bench", "tests"}),
}


def imported_packages(path: Path) -> dict[str, int]:
    """The top-level package of every module `path` imports, with the line of one import."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            found.setdefault(name.split(".")[0], node.lineno)
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_nothing_above_it(package: str) -> None:
    crossings = [
        f"{path.relative_to(ROOT)}:{line} imports {imported}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for imported, line in imported_packages(path).items()
        if imported in FORBIDDEN[package]
    ]
    assert crossings == []


def test_the_rule_sees_a_lazy_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "lazy.py"
    module.write_text("def f() -> None:\n    from workers.celery_app import app\n")
    assert imported_packages(module) == {"workers": 2}
