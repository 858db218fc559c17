"""The AsyncAPI 3.0 document (`realtime.asyncapi`), validated by the official AsyncAPI parser
(`@asyncapi/parser` from npm, installed from its lock file into a temporary folder)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from realtime import asyncapi
from realtime.frames import SOCKET_PATH, SSE_PATH
from realtime.registry import load_registry
from tests.app_events import DECLARED
from tests.harness import ROOT
from tests.node import npm_project

pytestmark = pytest.mark.install  # npm ci, then node

PROJECT = ROOT / "tests" / "asyncapi"


@pytest.fixture(scope="module")
def parser(tmp_path_factory: pytest.TempPathFactory) -> Path:
    files = ("package.json", "package-lock.json", "validate.mjs")
    return npm_project(tmp_path_factory, PROJECT, files, "ci", "--ignore-scripts")


def parse(parser: Path, document: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    path = parser / "document.json"
    path.write_text(json.dumps(document))
    done = subprocess.run(
        ["node", "validate.mjs", str(path)],
        cwd=parser, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.stdout, done.stderr[-2000:]
    return done.returncode, json.loads(done.stdout)


@pytest.mark.parametrize("modules", [(), (DECLARED,)])
def test_the_document_is_valid_asyncapi_3_with_every_declared_frame(
    parser: Path, modules: tuple[str, ...]
) -> None:
    registry = load_registry(modules)
    code, report = parse(parser, asyncapi.render(registry))
    assert (code, report["errors"]) == (0, [])
    assert report["warnings"] == []
    assert set(report["channels"]) == {SOCKET_PATH, SSE_PATH}
    assert set(report["messages"]) == {*registry.events, "insight_ready", "insight_gap", "auth"}


def test_the_parser_refuses_a_broken_document(parser: Path) -> None:
    """The check can fail: a message an operation names but its channel lacks, and a schema
    with a type JSON Schema does not have."""
    document = asyncapi.render(load_registry([DECLARED]))
    del document["channels"]["sse"]["messages"]["cart_updated"]
    document["components"]["schemas"]["CartUpdated"]["properties"]["items"]["type"] = "integr"
    code, report = parse(parser, document)
    assert code == 1
    assert any("cart_updated" in error for error in report["errors"])
    assert any("integr" in error or "items.type" in error for error in report["errors"])
