"""The event schema: exactly the seed's frames, and clear errors for bad events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from realtime import typescript
from realtime.events import (
    Modal,
    ModalContent,
    Redirect,
    Refresh,
    Toast,
    Update,
    encode_event,
)
from realtime.registry import load_registry
from tests.harness import ROOT

_insight = load_registry(())
parse_event = _insight.parse

SEED_FRAMES: list[tuple[Any, dict[str, Any]]] = [
    (Redirect(target="/orders?status=success"),
     {"type": "ui_redirect", "target": "/orders?status=success"}),
    (Toast(title="Order created", description="Order #17 was created", variant="success"),
     {"type": "ui_toast", "title": "Order created", "description": "Order #17 was created",
      "variant": "success"}),
    (Refresh(), {"type": "ui_refresh"}),
    (Update(data={"orderId": "17"}),
     {"type": "ui_update",
      "data": {"orderId": "17"}}),
    (Modal(data=ModalContent(type="payment_failed", payload={"orderId": "17"})),
     {"type": "ui_modal", "data": {"type": "payment_failed", "payload": {"orderId": "17"}}}),
]  # fmt: skip


@pytest.mark.parametrize(("event", "frame"), SEED_FRAMES)
def test_each_event_encodes_to_exactly_the_seed_frame(event: Any, frame: dict[str, Any]) -> None:
    assert json.loads(encode_event(event)) == frame


@pytest.mark.parametrize(("event", "frame"), SEED_FRAMES)
def test_seed_frames_parse_back_to_the_same_event(event: Any, frame: dict[str, Any]) -> None:
    assert parse_event(frame) == event


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"type": "ui_toast", "title": "t", "description": "d", "variant": "purple"}, "variant"),
        ({"type": "ui_toast", "title": "t", "variant": "info"}, "description"),
        ({"type": "ui_redirect"}, "target"),
        ({"type": "ui_redirect", "target": ""}, "target"),
        ({"type": "ui_update", "data": {"when": object()}}, "data"),
        ({"type": "ui_update", "data": {"x": float("nan")}}, "data"),
        ({"type": "ui_update", "data": {1: "non-string key"}}, "data"),
        ({"type": "ui_modal", "data": {"payload": {}}}, "type"),
        ({"type": "ui_refresh", "extra": 1}, "extra"),
        ({"type": "ui_explode"}, "type"),
    ],
)
def test_a_bad_event_raises_an_error_naming_the_field(bad: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as error:
        parse_event(bad)
    assert field in str(error.value)


def test_json_schema_describes_the_five_events() -> None:
    schema = _insight.json_schema()
    mapping = schema["discriminator"]["mapping"]
    assert set(mapping) == {"ui_redirect", "ui_toast", "ui_refresh", "ui_update", "ui_modal"}
    toast = schema["$defs"]["Toast"]
    assert toast["properties"]["variant"]["enum"] == ["success", "error", "warning", "info"]


@pytest.mark.parametrize(
    ("committed", "modules"),
    [
        (ROOT / "edge" / "static" / "insight.d.ts", ()),  # Insight's own events
        (ROOT / "examples" / "nextjs" / "src" / "hooks" / "insight.d.ts", ("demo.events",)),
    ],
)
def test_the_committed_typescript_declarations_match_the_declared_events(
    committed: Path, modules: tuple[str, ...]
) -> None:
    rendered = typescript.render(load_registry(modules))
    assert committed.read_text() == rendered, f"{committed} is stale: run `make typescript`"
    assert 'variant: "success" | "error" | "warning" | "info";' in rendered
