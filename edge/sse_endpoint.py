"""GET /api/v1/insight/sse: the WebSocket's session over Server-Sent Events, for networks
that refuse the upgrade and for any HTTP client.

Only the ends differ from a WebSocket's: the client is known by a Bearer JWT or a ticket
(`edge.tickets`) and resumes with `Last-Event-ID` or `since`; a refusal before the stream is
an HTTP status with a JSON body; each frame is one SSE message (`data:` the frame's JSON,
`id:` its cursor); a comment goes out every SSE_KEEPALIVE_SECONDS; and the stream the edge
ends carries a last `event: insight_close` with the WebSocket's close code. Between the ends,
`edge.session` and `edge.pump` deliver as they do for a WebSocket.

A reader that stops reading is dropped as a WebSocket peer is: its backlog fills its bounded
buffer (1013), or its transport takes nothing for WS_PING_INTERVAL_SECONDS +
WS_PING_TIMEOUT_SECONDS (what an unanswered ping is to a WebSocket); the last message is
written without waiting and the connection aborted a few seconds later
(`edge.protocols.stream`), its cap slot given back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive, Scope, Send

from core.config import Settings
from core.security import Identity, InvalidToken, verify_token_async
from edge.close_codes import CloseCode
from edge.connection import ClientConnection
from edge.expiry import Expiry
from edge.frame_writer import STREAM_WRITER_EXTENSION, StreamWriter
from edge.handshake import CHANNELS, bearer_token, well_formed_client
from edge.http_answers import refusal_of
from edge.pump import log_broker_failure, pump
from edge.session import Refused, ended, join, leave, refused, starting_point
from edge.tickets import redeem
from realtime import sse
from realtime.broker import Broker
from realtime.frames import DEFAULT_CHANNEL, frame_id, parse_cursor
from realtime.ids import CLIENT_RULE

logger = logging.getLogger(__name__)

END_TIMEOUT_SECONDS = 5.0  # served without `insight edge`: the last ASGI send waits for the peer
_SINGLE = ("channel", "since", "ticket", "client")  # query parameters that may appear once


class _FieldRefused(Refused):
    """A refusal that names the field of the request at fault."""

    def __init__(self, code: CloseCode, field: str, reason: str) -> None:
        super().__init__(code, f"{field} {reason}")
        self.field = field


def _malformed(field: str, reason: str) -> _FieldRefused:
    return _FieldRefused(CloseCode.MALFORMED, field, reason)


def _unauthorized(field: str, reason: str) -> _FieldRefused:
    return _FieldRefused(CloseCode.UNAUTHORIZED, field, reason)


def sse_frame(frame: bytes) -> bytes:
    """A frame as one SSE message: `data:` the frame, `id:` its cursor (if it has one)."""
    return sse.message(frame, event_id=frame_id(frame))


async def insight_sse(scope: Scope, receive: Receive, send: Send) -> None:
    """The SSE stream of the caller's events, or a JSON refusal."""
    request = Request(scope, receive)
    settings: Settings = request.app.state.settings
    engine = request.app.state.engine
    hub, presence = engine.hub, engine.presence
    wire: StreamWriter | None = scope.get("extensions", {}).get(STREAM_WRITER_EXTENSION)
    connection: ClientConnection | None = None
    try:
        try:
            requested = _check_request(request, settings)
            identity = await _authenticate(request, settings, engine.broker)
            if hub is None or presence is None:
                raise Refused(CloseCode.TRY_AGAIN_LATER, "event log unavailable")
            start = await starting_point(requested, hub, settings)
            if start[2]:
                raise Refused(CloseCode.TRY_AGAIN_LATER, "event log unavailable")
            connection = await join(
                identity, start, settings, hub, presence, wire=wire, since=requested,
                client=request.query_params.get("client"), encode=sse_frame,
            )  # fmt: skip
        except Refused as refusal:
            refused(refusal, "sse")
            field = refusal.field if isinstance(refusal, _FieldRefused) else None
            await refusal_of(refusal.code, refusal.reason, field)(scope, receive, send)
            return
        logger.info(
            "sse connected",
            extra={"user_id": identity.user_id, "business_id": identity.business_id},
        )
        await send({"type": "http.response.start", "status": 200, "headers": sse.STREAM_HEADERS})
        stream = _Stream(send, receive, wire, connection, settings)
        code = await pump(connection, settings, hub, stream)
        await stream.end(sse.closing(code, ended(connection, code, hub, "sse")))
    except ClientDisconnect:
        pass
    finally:
        if connection is not None and hub is not None and presence is not None:
            leave(connection, hub, presence)


def _check_request(request: Request, settings: Settings) -> str | None:
    """Validate origin, channel and the query's shape; the cursor to resume from, if any."""
    if not settings.origin_allowed(request.headers.get("origin")):
        raise Refused(CloseCode.FORBIDDEN, "origin not allowed")
    params = request.query_params
    if request.method != "GET":
        raise _malformed("method", "must be GET")
    for name in _SINGLE:
        if len(params.getlist(name)) > 1:
            raise _malformed(name, "is repeated")
    if "token" in params:
        raise _malformed("token", "is refused in a URL: use a ticket or an Authorization header")
    if (params.get("channel") or DEFAULT_CHANNEL) not in CHANNELS:
        raise Refused(CloseCode.FORBIDDEN, "channel not allowed")
    if "client" in params and well_formed_client(params["client"]) is None:
        raise _malformed("client", f"must be {CLIENT_RULE}")
    try:
        resume = sse.resume_point(request.headers.get("last-event-id"), params.get("since"))
    except sse.BadResume as bad:
        raise _malformed(bad.field, bad.reason) from None
    if resume is None:
        return None
    field, cursor = resume
    if parse_cursor(cursor) is None:
        raise _malformed(field, "is not a cursor")
    return cursor


async def _authenticate(request: Request, settings: Settings, broker: Broker | None) -> Identity:
    """The identity of the Authorization header's JWT, else of the `ticket` (spent here)."""
    authorization = request.headers.get("authorization")
    ticket = request.query_params.get("ticket")
    if authorization is not None:
        token = bearer_token(authorization)
        if token is None:
            raise _unauthorized("Authorization", "is not a Bearer token")
        try:
            return await verify_token_async(token, settings)
        except InvalidToken as error:
            raise _unauthorized("Authorization", "invalid token") from error
    if not ticket:
        raise _unauthorized("ticket", "a ticket or an Authorization header is required")
    if broker is None:
        raise Refused(CloseCode.TRY_AGAIN_LATER, "event log unavailable")
    try:
        async with asyncio.timeout(settings.ws_subscribe_timeout_seconds):
            identity = await redeem(broker.tickets, ticket, settings)
    except Exception as error:  # a Redis error or a timeout: 503, never a 500
        log_broker_failure("spending a ticket failed", error)
        raise Refused(CloseCode.TRY_AGAIN_LATER, "event log unavailable") from error
    if identity is None:
        raise _unauthorized("ticket", "invalid, expired or already used")
    return identity


class _Stream:
    """The stream's client as `edge.pump` sees it (`pump.Client`), and the response's body:
    through the wire when `insight edge` serves it, else ASGI."""

    __slots__ = ("_connection", "_receive", "_send", "_settings", "_wire")

    def __init__(
        self,
        send: Send,
        receive: Receive,
        wire: StreamWriter | None,
        connection: ClientConnection,
        settings: Settings,
    ) -> None:
        self._send = send
        self._receive = receive
        self._wire = wire
        self._connection = connection
        self._settings = settings

    async def send(self, frame: bytes) -> None:
        await self._body(sse_frame(frame))

    async def keep_alive(self) -> bool:
        """Send a comment; False if the transport takes nothing now."""
        if self._wire is not None:
            return self._wire.write_frame(sse.KEEPALIVE)
        await self._body(sse.KEEPALIVE)
        return True

    async def end(self, last: bytes) -> None:
        if self._wire is not None:
            self._wire.finish(last)
            return
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(END_TIMEOUT_SECONDS):
                await self._send({"type": "http.response.body", "body": last, "more_body": False})

    async def read(self, expiry: Expiry) -> None:
        """Until the client leaves (ClientDisconnect), send a comment every
        SSE_KEEPALIVE_SECONDS; close with 1013 a stream whose transport took nothing for a
        ping's interval and timeout. (A stream cannot renew in band: `expiry` ends it, and
        the client reopens.)"""
        settings = self._settings
        interval = settings.sse_keepalive_seconds
        stalled_limit = settings.ws_ping_interval_seconds + settings.ws_ping_timeout_seconds
        stalled = 0.0
        message = asyncio.ensure_future(self._receive())
        try:
            while True:
                await asyncio.wait([message], timeout=interval)
                if message.done():
                    if message.result()["type"] == "http.disconnect":
                        self._connection.hang_up()
                        raise ClientDisconnect
                    # A body, which a GET ignores.
                    message = asyncio.ensure_future(self._receive())
                elif await self.keep_alive():
                    stalled = 0.0
                else:
                    stalled += interval
                    if stalled >= stalled_limit:
                        self._connection.close(CloseCode.TRY_AGAIN_LATER)
                        return
        finally:
            message.cancel()

    async def _body(self, data: bytes) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": True})
