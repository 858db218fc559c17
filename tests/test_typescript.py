"""The TypeScript a frontend team drops in (insight.d.ts, generated; useUIEvents.ts, the
seed's hooks) compiles under `tsc --strict` against real React and sonner typings."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from realtime import typescript
from realtime.registry import load_registry
from tests.app_events import DECLARED
from tests.harness import ROOT
from tests.node import npm_project

pytestmark = pytest.mark.install  # npm install, then tsc

PROJECT = ROOT / "tests" / "typescript"
STATIC = ROOT / "edge" / "static"


@pytest.fixture(scope="module")
def node_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return npm_project(tmp_path_factory, PROJECT, ("package.json", "tsconfig.json"), "install")


def tsc(node_project: Path, cwd: Path, project: str) -> None:
    """`tsc -p <project>` in `cwd`, with the compiler installed in `node_project`."""
    checked = subprocess.run(
        [str(node_project / "node_modules" / ".bin" / "tsc"), "-p", project],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_declarations_and_react_hooks_compile_strictly(node_project: Path) -> None:
    for name in ("insight.d.ts", "insight.js", "useUIEvents.ts"):
        shutil.copy(STATIC / name, node_project / name)
    tsc(node_project, node_project, ".")


def test_an_applications_events_narrow_on_type_and_type_the_hooks_listener(
    node_project: Path,
) -> None:
    """The declarations `insight schema` writes for the test application, compiled with a
    file that narrows on its types (tests/typescript/narrowing.ts); its @ts-expect-error lines
    make declarations that are too loose (an `any`) fail too."""
    app = node_project / "app"
    app.mkdir(exist_ok=True)
    (app / "insight.d.ts").write_text(typescript.render(load_registry([DECLARED])))
    for name in ("insight.js", "useUIEvents.ts"):
        shutil.copy(STATIC / name, app / name)
    for name in ("tsconfig.json", "tsconfig.app.json", "narrowing.ts"):
        shutil.copy(PROJECT / name, app / name)
    tsc(node_project, app, "tsconfig.app.json")
