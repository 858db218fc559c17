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

The lane sits outside all of the app's middleware (`api.main.JobAPI` puts it there): those
ten layers, each an awaited call and a wrapped `send`, cost a publish more than the lane's
own work (bench/results/design-figures.md). So for a request it serves, it does itself what
they would: the request id (`api.middleware.request_id_for`), the metrics under the route's
template (`api.telemetry.record`), and the body limit, by serving only a body of a declared
length within the publish limit. A request with an Origin goes on, for CORS to answer with
headers of its own. FastAPI's dependency overrides do not reach the lane: a test that
overrides `server_key` must take the lane out too (`JobAPI.publish_lane`).
"""

from __future__ import annotations

import email.message
import json
import re
import time

from fastapi import HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import TypeAdapter, ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import is_server_key
from api.middleware import HttpMiddleware, request_id_for
from api.publish_schemas import Published, PublishIn
from api.refusals import declared_length, invalid_request
from api.routes.publish import (
    IDEMPOTENCY_KEY_PATTERN,
    MAX_IDEMPOTENCY_KEY,
    publish_items,
    refuse_before_publishing,
)
from api.telemetry import record
from core import json_logs as log_context
from core.app_path import app_path
from core.config import Settings
from realtime.eventlog import Retention

_PUBLISH_IN: TypeAdapter[PublishIn] = TypeAdapter(PublishIn)
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


class PublishLane(HttpMiddleware):
    """Serves valid publishes to `path` itself; passes every other request on to `app`."""

    def __init__(self, app: ASGIApp, path: str, max_bytes: int) -> None:
        super().__init__(app)
        self.path = path
        self.max_bytes = max_bytes

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST" or app_path(scope) != self.path:
            await self.app(scope, receive, send)
            return
        settings: Settings = scope["app"].state.settings
        headers = _lane_headers(scope, self.max_bytes, settings)
        if headers is None:
            await self.app(scope, receive, send)
            return
        received = await _read_body(receive, self.max_bytes)
        body = _body_of(received, self.max_bytes)
        retention = settings.retention
        item = None if body is None else _valid_item(body, retention)
        if item is None:  # refused, or the client left mid-body: the route answers
            await self.app(scope, _replaying(received, receive), send)
            return
        started = time.perf_counter()
        request_id = request_id_for(headers.get(b"x-request-id", b"").decode("latin-1"))
        context = log_context.request_id.set(request_id)
        status = 500  # unless answered: uvicorn answers what escapes, and logs it
        try:
            status = await _publish(item, headers, retention, request_id, scope, receive, send)
        finally:
            log_context.request_id.reset(context)
            record("POST", self.path, status, time.perf_counter() - started)


async def _publish(
    item: PublishIn,
    headers: dict[bytes, bytes],
    retention: Retention,
    request_id: str,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> int:
    """Publish the item and answer as the route does: its id, or the route's refusal, with the
    headers the middleware add (CORS's Vary, which it sends without an Origin too)."""
    key = headers.get(b"idempotency-key")
    answer: Response
    try:
        [event_id] = await publish_items(
            [item], [None if key is None else key.decode("latin-1")], retention
        )
    except HTTPException as refusal:  # Redis did not answer: the route's 503
        answer = await http_exception_handler(Request(scope, receive), refusal)
    except RequestValidationError as refusal:  # the log refused what the schema took
        answer = await invalid_request(Request(scope, receive), refusal)
    else:
        published = Published(id=event_id).model_dump_json().encode()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-length", b"%d" % len(published)),
            (b"content-type", b"application/json"),
            (b"vary", b"Origin"),
            (b"x-request-id", request_id.encode()),
        ]})  # fmt: skip
        await send({"type": "http.response.body", "body": published})
        return 200
    answer.headers["Vary"] = "Origin"
    answer.headers["X-Request-ID"] = request_id
    await answer(scope, receive, send)
    return answer.status_code


# What the lane reads of a request; any other header is the route's alone to read.
_READ = frozenset(
    (b"authorization", b"content-type", b"content-length", b"transfer-encoding", b"origin",
     b"idempotency-key", b"x-request-id")
)  # fmt: skip


def _lane_headers(scope: Scope, max_bytes: int, settings: Settings) -> dict[bytes, bytes] | None:
    """The headers the lane reads, if the request is one the lane may serve: the server key,
    a JSON body of a declared length within the limit, an idempotency key the route takes,
    and no Origin (CORS answers a browser's, with headers of its own). None otherwise, and
    when any of them comes twice: the route decides then."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in _READ:
            if name in found:
                return None
            found[name] = value
    length = declared_length(found.get(b"content-length", b"").decode("latin-1"))
    key = found.get(b"idempotency-key")
    lane_may_serve = (
        b"origin" not in found
        and b"transfer-encoding" not in found
        and length is not None
        and length <= max_bytes
        and _holds_server_key(found.get(b"authorization", b"").decode("latin-1"), settings)
        and _json_typed(found.get(b"content-type", b"").decode("latin-1"))
        and (key is None or _acceptable_idempotency_key(key.decode("latin-1")))
    )
    return found if lane_may_serve else None


def _holds_server_key(authorization: str, settings: Settings) -> bool:
    """The Authorization header is `Bearer <one of PUBLISH_API_KEYS>`, read as the route's
    HTTPBearer reads it."""
    scheme, credentials = get_authorization_scheme_param(authorization)
    return scheme.lower() == "bearer" and bool(credentials) and is_server_key(credentials, settings)


def _json_typed(content_type: str) -> bool:
    """The body is JSON by its Content-Type, as FastAPI reads one (`application/json` or
    `application/<anything>+json`, parameters aside); without one, FastAPI refuses it."""
    if not content_type:
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


async def _read_body(receive: Receive, max_bytes: int) -> list[Message]:
    """The messages of the whole body (of the length declared, within the limit: a server
    holds it to that), or of as much as came before the client left (the last message is
    then not a body's) or passed `max_bytes` (the last one says more is to come)."""
    messages = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages
        size += len(message.get("body", b""))
        if size > max_bytes:  # more than it declared: the route's body limit reads on
            return messages


def _body_of(messages: list[Message], max_bytes: int) -> bytes | None:
    """The body the messages carry, or None if the client left before its end or it is over
    `max_bytes` (more than it declared: the route's body limit answers)."""
    last = messages[-1]
    if last["type"] != "http.request" or last.get("more_body", False):
        return None
    body = b"".join(message.get("body", b"") for message in messages)
    return body if len(body) <= max_bytes else None


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """A receive that gives the messages the lane read, in order, then whatever comes next:
    the route sees the request as the lane did."""
    pending = list(reversed(messages))

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay
