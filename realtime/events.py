"""The five UI events of the seed's wire protocol, the edge's two control frames, and the
bases an application declares its own events and `ui_update` payloads on: the one source of
truth for their shapes.

Frames on the wire are exactly these models serialised, plus an `id` the edge adds (the
connection's resume cursor, see `realtime.frames`).
Validation happens in the producer, so a bad event is an exception in the task that made it,
never a broken frame in a browser. Which events a process knows (the five, and those of the
modules named by INSIGHT_EVENT_MODULES) is `realtime.registry`'s, and so are the JSON Schema,
TypeScript and AsyncAPI made from them.
"""

from __future__ import annotations

import json
import re
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

ToastVariant = Literal["success", "error", "warning", "info"]

# What an application's event type (and a typed `ui_update` payload's) may be called.
DECLARED_TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}")
RESERVED_PREFIX = "insight_"  # the edge's control frames


_FROZEN = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Event(BaseModel):
    """Every event a manager publishes: one of the five, or an `AppEvent`."""

    model_config = _FROZEN

    type: str
    # Seconds an event stays worth replaying to a client that reconnects, by default.
    default_ttl_seconds: ClassVar[int] = 600


class AppEvent(Event):
    """The base of an application's own event type: a subclass with `type` a `Literal` of
    its name (`[a-z][a-z0-9_]{0,63}`, none of the five, not `insight_...`), in a module named
    by INSIGHT_EVENT_MODULES, is published, relayed and typed like the five."""


class UpdatePayload(BaseModel):
    """The base of a typed `ui_update` payload: the `data` of a `ui_update` whose `type` names
    it is validated by its model (Insight's own are in `realtime.payloads`)."""

    model_config = _FROZEN

    type: str

    def as_data(self) -> dict[str, JsonValue]:
        """The `data` of the ui_update that carries it: the keys it was given (and `type`), so
        an optional key it was not given is absent rather than null."""
        given = self.model_dump(mode="json", by_alias=True, exclude_unset=True)
        return {"type": self.type, **given}


class Redirect(Event):
    """Navigate the browser to `target`."""

    # A redirect or a refresh minutes late would yank the user away from what they are doing.
    default_ttl_seconds: ClassVar[int] = 60
    type: Literal["ui_redirect"] = "ui_redirect"
    target: str = Field(min_length=1, max_length=2048)


class Toast(Event):
    """Show a toast notification."""

    default_ttl_seconds: ClassVar[int] = 300
    type: Literal["ui_toast"] = "ui_toast"
    title: str = Field(min_length=1, max_length=500)
    description: str = Field(max_length=5000)
    variant: ToastVariant


class Refresh(Event):
    """Reload the current page."""

    default_ttl_seconds: ClassVar[int] = 60
    type: Literal["ui_refresh"] = "ui_refresh"


class Update(Event):
    """Hand arbitrary JSON to the page's `ui-update` listeners."""

    type: Literal["ui_update"] = "ui_update"
    data: JsonValue


class ModalContent(BaseModel):
    """Which modal to open and what to show in it."""

    model_config = _FROZEN

    type: str = Field(min_length=1, max_length=200)
    payload: JsonValue = Field(default_factory=dict)


class Modal(Event):
    """Open a modal dialog."""

    type: Literal["ui_modal"] = "ui_modal"
    data: ModalContent


SEED_EVENTS: tuple[type[Event], ...] = (Redirect, Toast, Refresh, Update, Modal)


class Ready(Event):
    """The connection is live (after any replay). Its `id` is a valid `since` even if no
    event ever arrives, so a client that drops before its first event resumes without a hole.
    """

    type: Literal["insight_ready"] = "insight_ready"
    id: str


class Gap(Event):
    """Sent before a replay when events after `since` are gone from the log (trimmed, the log
    lost, or a failover that lost writes): reload state rather than trust the replay."""

    type: Literal["insight_gap"] = "insight_gap"
    since: str


CONTROL_FRAMES: tuple[type[Event], ...] = (Ready, Gap)


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


def encode_event(event: Event) -> str:
    """The event's frame body: compact JSON, keys exactly as the seed's frontend reads them."""
    return event.model_dump_json()
