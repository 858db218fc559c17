"""The AsyncAPI 3.0 document of the edge: its WebSocket and SSE channels and every frame they
carry, rendered from the declared events (`realtime.registry`), so that an event-driven client
describes itself from the same models as the publisher validates. `insight schema` writes it;
the edge serves it at GET /asyncapi.json.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic.json_schema import models_json_schema

from realtime.events import CONTEXT_KEYS, CONTROL_FRAMES, Event
from realtime.frames import DEFAULT_CHANNEL, SOCKET_PATH, SSE_PATH
from realtime.registry import EventRegistry, declared_type

ASYNCAPI_VERSION = "3.0.0"
_SCHEMAS = "#/components/schemas/"

_FRAME_ID = {
    "type": "string",
    "description": "The connection's resume cursor after this frame; it starts with the "
    "event's own id. Send it back as `since` (or Last-Event-ID) to resume.",
}
_TEXT = {"type": "string"}
_HANDSHAKE_QUERY = {
    "type": "object",
    "properties": {
        "token": _TEXT,
        "channel": {**_TEXT, "default": DEFAULT_CHANNEL},
        "client": _TEXT,
        "since": _TEXT,
    },
}
_AUTH = {
    "type": "object",
    "description": "Renew the session in band before `exp`: the same `sub` (and business), or "
    "the socket closes 4401.",
    "properties": {"type": {"const": "auth", "type": "string"}, "token": {"type": "string"}},
    "required": ["type", "token"],
    "additionalProperties": False,
}


def render(registry: EventRegistry, title: str = "Insight realtime edge") -> dict[str, Any]:
    """The AsyncAPI document of the frames `registry` declares."""
    frames = registry.frame_models()
    models = [*frames, *registry.payloads.values()]
    refs, document = models_json_schema(
        [(model, "serialization") for model in models], ref_template=_SCHEMAS + "{model}"
    )
    schemas: dict[str, Any] = document.get("$defs", {})
    payloads = [refs[(m, "serialization")]["$ref"] for m in registry.payloads.values()]
    update = schemas[_name(refs[(registry.events["ui_update"], "serialization")])]
    # A ui_update's data: a declared payload (validated by the publisher) or any other JSON.
    update["properties"]["data"] = {"anyOf": [*({"$ref": ref} for ref in payloads), {}]}
    messages = {
        declared_type(model) or model.__name__: _message(model, schemas, refs) for model in frames
    }
    auth = {"name": "auth", "title": "auth", "payload": _AUTH, "contentType": "application/json"}
    channel_messages = {name: {"$ref": f"#/components/messages/{name}"} for name in messages}
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": title,
            "version": "1.0.0",
            "description": "UI events from background jobs to the user's page: one JSON frame "
            "per message, each addressed to a user, a business or everyone, resumable by `id`.",
        },
        "defaultContentType": "application/json",
        "channels": {
            "websocket": {
                "address": SOCKET_PATH,
                "title": "WebSocket",
                "description": "GET with `token` (or the `insight.bearer.<JWT>` subprotocol), "
                "optional `channel=ui_events`, `client=<tab id>` and `since=<last id>`.",
                "messages": {**channel_messages, "auth": {"$ref": "#/components/messages/auth"}},
                "bindings": {"ws": {"method": "GET", "query": _HANDSHAKE_QUERY}},
            },
            "sse": {
                "address": SSE_PATH,
                "title": "Server-Sent Events",
                "description": "text/event-stream: each message's `data:` is the frame, its `id:` "
                "the frame's id; resume with Last-Event-ID. Authorization: Bearer, or `ticket`.",
                "messages": channel_messages,
            },
        },
        "operations": {
            "sendFrames": _operation("send", "websocket", messages, "Frames to the browser"),
            "streamFrames": _operation("send", "sse", messages, "The same frames over SSE"),
            "receiveAuth": _operation("receive", "websocket", {"auth": None}, "Session renewal"),
        },
        "components": {"schemas": schemas, "messages": {**messages, "auth": auth}},
    }


def _name(ref: dict[str, Any]) -> str:
    return str(ref["$ref"]).removeprefix(_SCHEMAS)


def _message(
    model: type[Event], schemas: dict[str, Any], refs: dict[Any, dict[str, Any]]
) -> dict[str, Any]:
    """A frame's message: the event's schema with the keys every event frame carries beside its
    own (`id`, the context keys); a control frame's own schema."""
    name = _name(refs[(model, "serialization")])
    payload = copy.deepcopy(schemas[name])
    if model not in CONTROL_FRAMES:
        context = {key: {"type": "string"} for key in sorted(CONTEXT_KEYS)}
        payload["properties"] = {"id": _FRAME_ID, **payload["properties"], **context}
        payload["required"] = ["id", *payload.get("required", ())]
    kind = declared_type(model) or name
    return {
        "name": kind,
        "title": kind,
        "summary": " ".join(str(model.__doc__ or kind).split()),
        "contentType": "application/json",
        "payload": payload,
    }


def _operation(action: str, channel: str, messages: dict[str, Any], summary: str) -> dict[str, Any]:
    return {
        "action": action,
        "summary": summary,
        "channel": {"$ref": f"#/channels/{channel}"},
        "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in messages],
    }
