"""Generate `edge/static/insight.d.ts` from the Python event schema.

The TypeScript types of the frames are derived from `event_json_schema()`, so they cannot
drift from what the publisher validates; a test fails when the committed file is stale.
Regenerate with `make typescript` (`python -m realtime.typescript > edge/static/insight.d.ts`,
and the copy in examples/nextjs/src/hooks/).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from realtime.events import CONTEXT_KEYS, Gap, Ready
from realtime.registry import EventRegistry, load_registry

DECLARATIONS = Path(__file__).resolve().parent.parent / "edge" / "static" / "insight.d.ts"

_CLIENT_API = """
export type ServerFrame = UIFrame | ReadyFrame | GapFrame;

export type ConnectionStatus =
  | "idle" | "connecting" | "open" | "reconnecting" | "closed" | "unauthorized" | "refused";

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
  onUpdate?: (data: JsonValue, frame: Update & FrameContext) => void;
  onModal?: (data: ModalContent, frame: Modal & FrameContext) => void;
  onGap?: (since: string) => void;
  /**
   * `detail` has the close code when one explains the status: "reconnecting" after 4429 (this
   * user has too many sockets open: the client waits longer each time); "unauthorized" after
   * 4401 without getToken (reason "revoked": the user was disconnected by the server).
   */
  onStatus?: (status: ConnectionStatus, detail?: { code?: number; reason?: string }) => void;
  /** Where the resume cursor is kept (default: sessionStorage). */
  storage?: Pick<Storage, "getItem" | "setItem"> | null;
  storageKey?: string;
  minDelayMs?: number;
  maxDelayMs?: number;
}

export interface UIEventsHandle {
  close(): void;
  readonly status: ConnectionStatus;
  readonly cursor: string | null;
}

export function connectUIEvents(options: ConnectOptions): UIEventsHandle;
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
    return "JsonValue"


def _interface(name: str, schema: dict[str, Any]) -> str:
    lines = []
    if schema.get("description"):
        lines.append(f"/** {schema['description']} */")
    lines.append(f"export interface {name} {{")
    # Every key is always present in a frame: the publisher serialises defaults too.
    for key, prop in schema.get("properties", {}).items():
        lines.append(f"  {key}: {_type_of(prop)};")
    lines.append("}")
    return "\n".join(lines)


def render(registry: EventRegistry | None = None) -> str:
    """The whole declaration file, of Insight's own events unless `registry` is given."""
    schema = (registry or load_registry(())).json_schema()
    definitions = schema["$defs"]
    events = [str(ref).rsplit("/", 1)[-1] for ref in schema["discriminator"]["mapping"].values()]
    parts = [
        "// Generated from realtime/events.py by `make typescript`. Do not edit by hand.",
        "export type JsonValue =\n  | string | number | boolean | null | JsonValue[]"
        " | { [key: string]: JsonValue };",
    ]
    for name in sorted(definitions):
        if name != "JsonValue":
            parts.append(_interface(name, definitions[name]))
    context = "\n".join(f"  {key}?: string;" for key in sorted(CONTEXT_KEYS))
    parts.append(
        "/** Keys every event frame may carry beside its own: `id` (the connection's resume"
        " cursor, which starts with the event's own id) and what it is about. */\n"
        f"export interface FrameContext {{\n  id: string;\n{context}\n}}"
    )
    parts.append(f"export type UIEvent = {' | '.join(events)};")
    parts.append("export type UIFrame = UIEvent & FrameContext;")
    parts.append(_interface("ReadyFrame", Ready.model_json_schema(mode="serialization")))
    parts.append(_interface("GapFrame", Gap.model_json_schema(mode="serialization")))
    return "\n\n".join(parts) + "\n" + _CLIENT_API


if __name__ == "__main__":
    print(render(), end="")
