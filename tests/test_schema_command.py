"""`insight schema` and the edge's GET /asyncapi.json: the TypeScript and the AsyncAPI document
of the declared events, the application's own included (rendered in this process; the
documents themselves are checked by tsc and the AsyncAPI parser in tests/test_typescript.py and
tests/test_asyncapi.py)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from cli.main import main
from edge.app import create_app
from realtime import asyncapi, typescript
from realtime.registry import load_registry
from tests.app_events import DECLARED, declaring

pytestmark = pytest.mark.anyio


def test_the_command_writes_both_documents_of_the_named_modules(tmp_path: Path) -> None:
    ts, doc = tmp_path / "insight.d.ts", tmp_path / "asyncapi.json"
    assert (
        main(["schema", "--modules", DECLARED, "--typescript", str(ts), "--asyncapi", str(doc)])
        == 0
    )
    registry = load_registry([DECLARED])
    assert ts.read_text() == typescript.render(registry)
    assert json.loads(doc.read_text()) == asyncapi.render(registry)
    assert '"cart-updated": CartUpdated & FrameContext;' in ts.read_text()


def test_the_command_reads_insight_event_modules_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with declaring(DECLARED):
        assert main(["schema"]) == 0
    assert "export interface CartUpdated" in (tmp_path / "insight.d.ts").read_text()
    messages = json.loads((tmp_path / "asyncapi.json").read_text())["components"]["messages"]
    assert {"cart_updated", "ui_confetti", "ui_toast"} <= set(messages)


def test_the_command_refuses_a_module_it_cannot_use_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "insight.d.ts"
    assert (
        main(["schema", "--modules", "tests.app_events.reserved", "--typescript", str(target)]) == 2
    )
    assert "tests.app_events.reserved" in capsys.readouterr().err
    assert not target.exists()


async def test_the_edge_serves_the_asyncapi_document_of_its_declared_events() -> None:
    with declaring(DECLARED):
        app = create_app()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
            response = await client.get("/asyncapi.json")
        assert response.status_code == 200
        assert response.json() == asyncapi.render(load_registry([DECLARED]))
