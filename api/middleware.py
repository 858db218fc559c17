"""The job API's own ASGI middleware: each one plain ASGI, acting on HTTP requests only.

Not `@app.middleware("http")`: Starlette runs such a function as a BaseHTTPMiddleware, which
pushes every request through a task group and memory streams of its own; two of them were
more than half the API's CPU per publish (measured: bench/results/design-figures.md).
"""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import json_logs as log_context

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,100}")


class HttpMiddleware:
    """Wraps `app`; `handle` sees each HTTP request, anything else (lifespan) passes by."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.handle(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class RequestId(HttpMiddleware):
    """One id per request (X-Request-ID if the caller sent a sane one), for its log lines and
    its jobs, and answered back in X-Request-ID."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = request_id_for(Headers(scope=scope).get("x-request-id", ""))
        scope.setdefault("state", {})["request_id"] = request_id  # request.state.request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        token = log_context.request_id.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log_context.request_id.reset(token)


def request_id_for(given: str) -> str:
    """The caller's X-Request-ID if it is a sane one, else a new id."""
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
