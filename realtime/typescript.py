"""The TypeScript declarations of every frame (`insight.d.ts`), rendered from the declared
events (`realtime.registry`): the five, the application's own, and the typed `ui_update`
payloads. They cannot drift from what the publisher validates; `insight schema` writes them
for an application, `make typescript` writes Insight's own into edge/static/ and the Next.js
example's (with its own event) into examples/nextjs/src/hooks/, and tests fail when either
committed file is stale.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic.json_schema import models_json_schema

from realtime.events import CONTEXT_KEYS, CONTROL_FRAMES
from realtime.registry import EventRegistry

_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")

_CLIENT_API = """
export type ServerFrame = UIFrame | ReadyFrame | GapFrame;

export type ConnectionStatus =
  | "idle" | "connecting" | "open" | "reconnecting" | "closed" | "unauthorized" | "refused";

export type Transport = "websocket" | "sse";

export interface ConnectOptions {
  /** ws(s)://host/api/v1/insight */
  url: string;
  /** A fixed token; prefer getToken, which is called again after a 4401. */
  token?: string;
  /** Called for the first token, after a 4401, and shortly before `exp` to renew in band. */
  getToken?: () => Promise<string> | string;
  channel?: "ui_events";
  onToast?: (toast: Toast & FrameContext) => void;
  onRedirect?: (target: string, frame: Redirect & FrameContext) => void;
  onRefresh?: (frame: Refresh & FrameContext) => void;
  onUpdate?: (data: UpdateData, frame: Update & FrameContext) => void;
  onModal?: (data: ModalContent, frame: Modal & FrameContext) => void;
  onGap?: (since: string) => void;
  /**
   * `detail` has the close code when one explains the status: "reconnecting" after 4429 (this
   * user has too many sockets open: the client waits longer each time); "unauthorized" after
   * 4401 without getToken (reason "revoked": the user was disconnected by the server).
   */
  onStatus?: (
    status: ConnectionStatus,
    detail?: { code?: number; reason?: string; transport?: Transport },
  ) => void;
  /**
   * "auto" (default): a WebSocket, and Server-Sent Events after `fallbackAfter` (2) attempts
   * that never open, trying the WebSocket again after `retryWebSocketMs` (5 min); "sse" forces
   * SSE (a ticket from POST .../insight/tickets, renewed by reopening before `exp`).
   */
  transport?: "auto" | Transport;
  fallbackAfter?: number;
  retryWebSocketMs?: number;
  /** Where the resume cursor is kept (default: sessionStorage). */
  storage?: Pick<Storage, "getItem" | "setItem"> | null;
  storageKey?: string;
  minDelayMs?: number;
  maxDelayMs?: number;
  /** This tab's id (default: `tabId()`): a job it starts sends its redirect and modal here. */
  client?: string;
}

export interface UIEventsHandle {
  close(): void;
  readonly status: ConnectionStatus;
  readonly cursor: string | null;
  /** The tab id the sockets carry as `client=`. */
  readonly client: string;
}

export function connectUIEvents(options: ConnectOptions): UIEventsHandle;

/** This tab's id, made once and kept in sessionStorage (a reload keeps it). */
export function tabId(storage?: Pick<Storage, "getItem" | "setItem"> | null): string;

/** `fetch` with this tab's id as the `Insight-Client` header: use it for the job API. */
export function insightFetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
"""


def _type_of(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "const" in schema:
        return json.dumps(schema["const"])
    if "enum" in schema:
        return " | ".join(json.dumps(value) for value in schema["enum"])
    if "anyOf" in schema or "oneOf" in schema:
        options = schema.get("anyOf") or schema.get("oneOf") or []
        return " | ".join(_type_of(option) for option in options)
    kind = schema.get("type")
    if kind == "string":
        return "string"
    if kind in ("integer", "number"):
        return "number"
    if kind == "boolean":
        return "boolean"
    if kind == "null":
        return "null"
    if kind == "array":
        return f"Array<{_type_of(schema.get('items', {}))}>"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"{{ [key: string]: {_type_of(schema['additionalProperties'])} }}"
    return "JsonValue"


def _interface(name: str, schema: dict[str, Any], *, optional: bool = False) -> str:
    """An interface per model. An event frame carries every key (the publisher serialises
    defaults too); a typed payload leaves out the optional keys it was not given (`optional`)."""
    lines = []
    if schema.get("description"):
        lines.append(f"/** {schema['description']} */")
    lines.append(f"export interface {name} {{")
    required = set(schema.get("required", ()))
    for key, prop in schema.get("properties", {}).items():
        mark = "?" if optional and key not in required and prop.get("const") is None else ""
        name = key if _IDENTIFIER.fullmatch(key) else json.dumps(key)
        lines.append(f"  {name}{mark}: {_type_of(prop)};")
    lines.append("}")
    return "\n".join(lines)


def _name(ref: object) -> str:
    return str(ref).rsplit("/", 1)[-1]


def listener_name(event_type: str) -> str:
    """The window CustomEvent insight.js dispatches an application's event as: `x_y` -> `x-y`."""
    return event_type.replace("_", "-")


def render(registry: EventRegistry) -> str:
    """The whole declaration file for the events `registry` declares."""
    events_schema = registry.json_schema()
    mapping = {kind: _name(ref) for kind, ref in events_schema["discriminator"]["mapping"].items()}
    models = [*registry.payloads.values(), *CONTROL_FRAMES]
    names, extra = models_json_schema([(m, "serialization") for m in models])
    definitions = {**events_schema["$defs"], **extra.get("$defs", {})}
    payloads = [_name(names[(m, "serialization")]["$ref"]) for m in registry.payloads.values()]
    ready, gap = (_name(names[(m, "serialization")]["$ref"]) for m in CONTROL_FRAMES)
    # A ui_update's data: a declared payload (validated by the publisher) or any other JSON.
    update = definitions[mapping["ui_update"]]
    update["properties"]["data"] = {"$ref": "#/$defs/UpdateData"}
    parts = [
        "// Generated from the declared events by `insight schema`. Do not edit by hand.",
        "export type JsonValue =\n  | string | number | boolean | null | JsonValue[]"
        " | { [key: string]: JsonValue };",
    ]
    events = set(events_schema["$defs"])  # the payloads' models are the others
    for name in sorted(set(definitions) - {"JsonValue", ready, gap}):
        parts.append(_interface(name, definitions[name], optional=name not in events))
    context = "\n".join(f"  {key}?: string;" for key in sorted(CONTEXT_KEYS))
    parts.append(
        "/** Keys every event frame may carry beside its own: `id` (the connection's resume"
        " cursor, which starts with the event's own id) and what it is about. */\n"
        f"export interface FrameContext {{\n  id: string;\n{context}\n}}"
    )
    parts.append(f"export type UpdatePayload = {' | '.join(payloads) or 'never'};")
    parts.append("export type UpdateData = UpdatePayload | JsonValue;")
    parts.append(f"export type UIEvent = {' | '.join(mapping.values())};")
    parts.append("export type UIFrame = UIEvent & FrameContext;")
    parts.append(_interface("ReadyFrame", definitions[ready]))
    parts.append(_interface("GapFrame", definitions[gap]))
    return "\n\n".join(parts) + "\n" + _CLIENT_API + _dispatched(registry, mapping)


def _dispatched(registry: EventRegistry, mapping: dict[str, str]) -> str:
    """What insight.js hands to `window` listeners, by event name: the seed's, and each of the
    application's events as its frame."""
    own = "".join(
        f'  "{listener_name(kind)}": {mapping[kind]} & FrameContext;\n'
        for kind in registry.app_events
    )
    return f"""
/** The window CustomEvents insight.js dispatches, and what each carries as `detail`. */
export interface UIEventMap {{
  "ui-update": UpdateData;
  "ui-modal": ModalContent;
  "ui-toast": Toast & FrameContext;
  "ui-gap": {{ since: string }};
{own}}}

/** Whether a ui_update's data is the declared payload `type` (the publisher validated it). */
export function isUpdatePayload<K extends UpdatePayload["type"]>(
  data: UpdateData,
  type: K,
): data is Extract<UpdatePayload, {{ type: K }}>;
"""
