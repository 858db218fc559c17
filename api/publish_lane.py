"""POST /api/v1/publish without FastAPI's request machinery, for the requests it accepts.

Producers publish at rates no other route sees (every progress update of a fleet of
workers), and through FastAPI a publish cost the API about six times the CPU of the direct
publish it makes (`bench.server_api`): most of it in route matching, dependency solving,
the exception and exit-stack layers and the response model, none of which a valid publish
needs. This lane takes a request that the route would answer 200 through the same steps,
written plainly: the same server-key check (`api.deps.is_server_key`), the same body parse
and schema (`json.loads`, then `PublishIn` validated as FastAPI validates it), the same checks
and publish (`api.routes.publish`), the same answer, byte for byte.

Anything else goes on to the route, its body replayed: no key or a wrong one, a user's
token, a body the schema refuses, an Idempotency-Key the route would refuse. So every
refusal is still the route's own, written once, and the OpenAPI entry is the route's. What
the lane does not pass on is a publish it started: Redis not answering is answered here,
with the route's own 503 (a second attempt could publish the event twice).

The lane sits inside the other middleware, which therefore still apply: the request id, CORS,
the body limit, and the metrics, counted under the route's template. FastAPI's dependency
overrides do not reach it: a test that overrides `server_key` must take the lane out too.
"""

from __future__ import annotations

import email.message
import json
import re

from fastapi import HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import is_server_key
from api.middleware import HttpMiddleware
from api.publish_schemas import Published, PublishIn
from api.refusals import invalid_request
from api.routes.publish import (
    IDEMPOTENCY_KEY_PATTERN,
    MAX_IDEMPOTENCY_KEY,
    publish_items,
    refuse_before_publishing,
)
from api.telemetry import ROUTE_TEMPLATE
from core.app_path import app_path
from core.config import Settings
from realtime.eventlog import Retention

_PUBLISH_IN: TypeAdapter[PublishIn] = TypeAdapter(PublishIn)
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


class PublishLane(HttpMiddleware):
    """Serves valid publishes to `path` itself; passes every other request on to `app`."""

    def __init__(self, app: ASGIApp, path: str) -> None:
        super().__init__(app)
        self.path = path

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST" or app_path(scope) != self.path:
            await self.app(scope, receive, send)
            return
        scope[ROUTE_TEMPLATE] = self.path  # whoever answers (a 413 while the lane reads too)
        headers = Headers(scope=scope)
        settings: Settings = scope["app"].state.settings
        if not _holds_server_key(headers, settings) or not _json_typed(headers):
            await self.app(scope, receive, send)
            return
        idempotency_key = headers.get("idempotency-key")
        if idempotency_key is not None and not _acceptable_idempotency_key(idempotency_key):
            await self.app(scope, receive, send)
            return
        received = await _read_body(receive)
        body = _body_of(received)
        retention = settings.retention
        item = None if body is None else _valid_item(body, retention)
        if item is None:  # refused, or the client left mid-body: the route answers
            await self.app(scope, _replaying(received, receive), send)
            return
        answer: Response
        try:
            [event_id] = await publish_items([item], [idempotency_key], retention)
        except HTTPException as refusal:  # Redis did not answer: the route's 503
            answer = await http_exception_handler(Request(scope, receive), refusal)
        except RequestValidationError as refusal:  # the log refused what the schema took
            answer = await invalid_request(Request(scope, receive), refusal)
        else:
            published = Published(id=event_id).model_dump_json()
            answer = Response(published, media_type="application/json")
        await answer(scope, receive, send)


def _holds_server_key(headers: Headers, settings: Settings) -> bool:
    """The Authorization header is `Bearer <one of PUBLISH_API_KEYS>`, read as the route's
    HTTPBearer reads it."""
    scheme, credentials = get_authorization_scheme_param(headers.get("authorization"))
    return scheme.lower() == "bearer" and bool(credentials) and is_server_key(credentials, settings)


def _json_typed(headers: Headers) -> bool:
    """The body is JSON by its Content-Type, as FastAPI reads one (`application/json` or
    `application/<anything>+json`, parameters aside); without one, FastAPI refuses it."""
    content_type = headers.get("content-type")
    if content_type is None:
        return False
    if content_type == "application/json":  # what nearly every producer sends
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _acceptable_idempotency_key(key: str) -> bool:
    # fullmatch: the pattern's `$` would also let a final newline through
    return len(key) <= MAX_IDEMPOTENCY_KEY and _IDEMPOTENCY_KEY.fullmatch(key) is not None


def _valid_item(body: bytes, retention: Retention) -> PublishIn | None:
    """The body as the route would take it (parsed by json.loads, validated as FastAPI
    validates a body, passed by the route's own checks), or None if the route refuses it."""
    if not body:
        return None
    try:
        item = _PUBLISH_IN.validate_python(json.loads(body), from_attributes=True)
        refuse_before_publishing([item], retention, lambda _: ("body",))
    except (ValueError, RecursionError, ValidationError, RequestValidationError):
        return None  # (json.loads raises ValueError, or RecursionError for deep nesting)
    return item


async def _read_body(receive: Receive) -> list[Message]:
    """The messages of the whole body (the body limit, outside, bounds it), or of as much as
    came before the client left (the last message is then not a body's)."""
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def _body_of(messages: list[Message]) -> bytes | None:
    """The body the messages carry, or None if the client left before its end."""
    if messages[-1]["type"] != "http.request":
        return None
    return b"".join(message.get("body", b"") for message in messages)


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """A receive that gives the messages the lane read, in order, then whatever comes next:
    the route sees the request as the lane did."""
    pending = list(reversed(messages))

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay
