"""The five UI events of the seed's wire protocol, and the edge's two control frames: the one
source of truth for their shapes.

Frames on the wire are exactly these models serialised, plus an `id` the edge adds (the
connection's resume cursor, see `realtime.frames`).
Validation happens in the producer, so a bad event is an exception in the task that made it,
never a broken frame in a browser. The JSON Schema (and the TypeScript types generated from
it) come from `event_json_schema()`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter

ToastVariant = Literal["success", "error", "warning", "info"]
EventType = Literal["ui_redirect", "ui_toast", "ui_refresh", "ui_update", "ui_modal"]

# How long an event stays worth replaying to a client that reconnects (seconds).
# A redirect or a refresh minutes late would yank the user away from what they are doing.
DEFAULT_TTL_SECONDS: dict[str, int] = {
    "ui_redirect": 60,
    "ui_refresh": 60,
    "ui_toast": 300,
    "ui_update": 600,
    "ui_modal": 600,
}


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Redirect(_Event):
    """Navigate the browser to `target`."""

    type: Literal["ui_redirect"] = "ui_redirect"
    target: str = Field(min_length=1, max_length=2048)


class Toast(_Event):
    """Show a toast notification."""

    type: Literal["ui_toast"] = "ui_toast"
    title: str = Field(min_length=1, max_length=500)
    description: str = Field(max_length=5000)
    variant: ToastVariant


class Refresh(_Event):
    """Reload the current page."""

    type: Literal["ui_refresh"] = "ui_refresh"


class Update(_Event):
    """Hand arbitrary JSON to the page's `ui-update` listeners."""

    type: Literal["ui_update"] = "ui_update"
    data: JsonValue


class ModalContent(_Event):
    """Which modal to open and what to show in it."""

    type: str = Field(min_length=1, max_length=200)
    payload: JsonValue = Field(default_factory=dict)


class Modal(_Event):
    """Open a modal dialog."""

    type: Literal["ui_modal"] = "ui_modal"
    data: ModalContent


UIEvent = Annotated[Redirect | Toast | Refresh | Update | Modal, Field(discriminator="type")]

_adapter: TypeAdapter[UIEvent] = TypeAdapter(UIEvent)


class Ready(_Event):
    """The connection is live (after any replay). Its `id` is a valid `since` even if no
    event ever arrives, so a client that drops before its first event resumes without a hole.
    """

    type: Literal["insight_ready"] = "insight_ready"
    id: str


class Gap(_Event):
    """Sent before a replay when events after `since` are gone from the log (trimmed, the log
    lost, or a failover that lost writes): reload state rather than trust the replay."""

    type: Literal["insight_gap"] = "insight_gap"
    since: str


ControlFrame = Annotated[Ready | Gap, Field(discriminator="type")]
_frames: TypeAdapter[UIEvent | ControlFrame] = TypeAdapter(UIEvent | ControlFrame)


# Keys a producer may add beside an event's own, like the `id` the log adds: they tell the page
# which job (and which API request) an event is about, without changing the seed's shapes.
CONTEXT_KEYS = frozenset({"jobId", "requestId"})


def encode_context(context: dict[str, str]) -> str:
    """The context as JSON members to put before an event's own (`"jobId":"…",`), validated."""
    unknown = set(context) - CONTEXT_KEYS
    if unknown:
        raise ValueError(f"unknown context keys {sorted(unknown)}; allowed: {sorted(CONTEXT_KEYS)}")
    for key, value in context.items():
        if not isinstance(value, str) or not 0 < len(value) <= 200:
            raise ValueError(f"context {key} must be a string of 1-200 characters")
    return "".join(f"{json.dumps(k)}:{json.dumps(v)}," for k, v in sorted(context.items()))


def parse_event(value: Any) -> Redirect | Toast | Refresh | Update | Modal:
    """Validate a dict (a received frame without `id` and context keys) into an event."""
    return _adapter.validate_python(value)


def encode_event(event: Redirect | Toast | Refresh | Update | Modal) -> str:
    """The event's frame body: compact JSON, keys exactly as the seed's frontend reads them."""
    return event.model_dump_json()


def event_json_schema() -> dict[str, Any]:
    """JSON Schema of an event (the union of the five), for clients and generators."""
    schema = _adapter.json_schema(mode="serialization")
    schema["title"] = "InsightUIEvent"
    return schema


def frame_json_schema() -> dict[str, Any]:
    """JSON Schema of every frame the edge sends: the five events and the control frames."""
    schema = _frames.json_schema(mode="serialization")
    schema["title"] = "InsightFrame"
    return schema
