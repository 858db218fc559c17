"""One HTTP request straight to an ASGI app, as raw messages, and what the app made of it:
for tests that must send what no HTTP client sends (a client that leaves mid-body, header
names in capitals, hostile Content-Lengths) and compare two apps' answers and metrics."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from prometheus_client import REGISTRY
from starlette.types import ASGIApp, Message

from tests.harness import WAIT

Headers = list[tuple[bytes, bytes]]
Chunks = list[bytes | None]
PUBLISH = "/api/v1/publish"


@dataclass
class Reply:
    """What one app made of one request: its answer, what it counted, what it raised."""

    status: int | None  # None: the app answered nothing
    headers: Headers  # as sent, but the date and the request id
    request_id: bytes | None
    body: bytes
    counted: dict[str, float]
    raised: str | None = None
    messages: list[Message] = field(default_factory=list)


async def send_to(
    app: ASGIApp,
    headers: Headers,
    chunks: Chunks,
    *,
    method: str = "POST",
    path: str = PUBLISH,
    root_path: str = "",
) -> Reply:
    """One HTTP request straight to the app's ASGI callable (None in `chunks`: the client
    leaves there); what escapes the app is caught and named, as a server would log it."""
    inbox: list[Message] = [
        {"type": "http.disconnect"}
        if chunk is None
        else {"type": "http.request", "body": chunk, "more_body": n + 1 < len(chunks)}
        for n, chunk in enumerate(chunks)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return inbox.pop(0) if inbox else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "server": ("api", 80), "client": ("127.0.0.1", 5000), "path": path,
        "raw_path": path.encode(), "root_path": root_path, "query_string": b"",
        "headers": headers,
    }  # fmt: skip
    before = requests_counted()
    raised = None
    try:
        async with asyncio.timeout(WAIT):
            await app(scope, receive, send)
    except Exception as error:  # the server's part: answer 500 and log it
        raised = repr(error)
    after = requests_counted()
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    all_headers: Headers = [] if start is None else list(start["headers"])
    return Reply(
        None if start is None else start["status"],
        [h for h in all_headers if h[0] not in (b"date", b"x-request-id")],
        next((v for k, v in all_headers if k == b"x-request-id"), None),
        b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"),
        {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)},
        raised,
        sent,
    )


def requests_counted() -> dict[str, float]:
    """insight_api_requests_total by method, route and status."""
    return {
        f"{s.labels['method']} {s.labels['route']} {s.labels['status']}": s.value
        for metric in REGISTRY.collect()
        if metric.name == "insight_api_requests"
        for s in metric.samples
        if s.name == "insight_api_requests_total"
    }
