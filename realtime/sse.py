"""The Server-Sent Events wire format (the HTML standard's `text/event-stream`), spelled once
for every stream Insight serves: the edge's `/api/v1/insight/sse` and the job API's job
streams. Bytes in, bytes out, no web framework: both services import it without importing
each other.

A message is `id:`, `event:` and `data:` lines ended by a blank line; a line starting with `:`
is a comment, which a client ignores and a proxy counts as traffic. A client that reconnects
sends the last `id:` it saw as the `Last-Event-ID` header, which `resume_point` checks before
anything trusts it.
"""

from __future__ import annotations

import json

MEDIA_TYPE = "text/event-stream"
CLOSE_EVENT = "insight_close"  # the last message of a stream the server ends
KEEPALIVE = b": keep-alive\n\n"
MAX_ID_LENGTH = 1024  # the longest id a stream sends, hence the longest one it takes back
# Headers every stream answers with: no cache or proxy may hold or transform the stream
# (`X-Accel-Buffering: no` turns nginx's response buffering off for this response).
STREAM_HEADERS = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
)


class BadResume(ValueError):
    """A resume point a stream cannot use; `field` names where the client put it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field} {reason}")
        self.field = field
        self.reason = reason


def message(data: bytes, *, event_id: bytes | None = None, event: str | None = None) -> bytes:
    """One SSE message carrying `data` (a line per line of it), with its `id:` and `event:`."""
    head = b""
    if event is not None:
        head += b"event: " + event.encode() + b"\n"
    if event_id is not None:
        head += b"id: " + event_id + b"\n"
    if b"\n" in data or b"\r" in data:
        lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        return head + b"".join(b"data: " + line + b"\n" for line in lines) + b"\n"
    return head + b"data: " + data + b"\n\n"


def closing(code: int, reason: str) -> bytes:
    """The last message of a stream the server ends: the WebSocket close code it would have
    sent, and why, so that a client acts on either transport the same way."""
    body = json.dumps({"code": code, "reason": reason}, separators=(",", ":"))
    return message(body.encode(), event=CLOSE_EVENT)


def resume_point(last_event_id: str | None, since: str | None) -> tuple[str, str] | None:
    """Where a stream resumes from, and the field that said so: the `Last-Event-ID` header
    (sent by the client's own reconnect, so newer than a `since` left in its URL), else the
    `since` query parameter; None for neither. Raises BadResume, naming the field, for a value
    no stream ever sent as an id (control characters, not ASCII, too long)."""
    for field, value in (("Last-Event-ID", last_event_id), ("since", since)):
        if value is None or value == "":
            continue  # an empty Last-Event-ID is what a client sends that saw no id
        if len(value) > MAX_ID_LENGTH:
            raise BadResume(field, f"longer than {MAX_ID_LENGTH} characters")
        if not value.isascii() or not value.isprintable():
            raise BadResume(field, "is not printable ASCII")
        return field, value
    return None
