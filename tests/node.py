"""A Node.js project for a test, installed into a temporary folder: the TypeScript compiler
(tests/test_typescript.py) and the AsyncAPI parser (tests/test_asyncapi.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def npm_project(
    tmp_path_factory: pytest.TempPathFactory, source: Path, files: tuple[str, ...], *install: str
) -> Path:
    """`files` of `source` copied into a fresh folder, then `npm <install...>` run there; skips
    without npm, unless INSIGHT_REQUIRE_NODE makes it a failure."""
    npm = shutil.which("npm")
    if npm is None:
        if os.environ.get("INSIGHT_REQUIRE_NODE"):
            pytest.fail("npm is missing and INSIGHT_REQUIRE_NODE is set")
        pytest.skip(f"{source.name}: this check needs Node.js and npm")
    workdir = tmp_path_factory.mktemp(source.name)
    for name in files:
        shutil.copy(source / name, workdir / name)
    installed = subprocess.run(
        [npm, *install, "--no-audit", "--no-fund", "--silent"],
        cwd=workdir, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    return workdir
