"""GET /api/v1/insight: authenticate, join the hub, and pump frames until one side stops.

Every refusal accepts the upgrade first and then closes with a code from `CloseCode`,
because a browser cannot read the HTTP status of a refused handshake (it only sees 1006).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from core.config import Settings
from core.security import Identity, InvalidToken, verify_token_async
from edge import telemetry
from edge.close_codes import CloseCode
from edge.connection import ClientConnection
from edge.frame_writer import FRAME_WRITER_EXTENSION
from edge.handshake import (
    BEARER_SUBPROTOCOL_PREFIX,
    CHANNELS,
    DEFAULT_CHANNEL,
    SUBPROTOCOL,
    auth_message,
    token_from_subprotocols,
    well_formed_token,
)
from edge.hub import Hub, SubscribeTimeout
from edge.presence import Presence
from edge.pump import log_broker_failure, pump
from realtime.broker import Admission
from realtime.broker.log_calls import start_position
from realtime.frames import MAX_SEQ, Position, parse_cursor
from realtime.ids import CLIENT_PATTERN, CLIENT_RULE
from realtime.recipients import recipients_of

logger = logging.getLogger(__name__)

SOCKET_PATH = "/api/v1/insight"
ALWAYS = frozenset({"u", "a"})  # the kinds every connection listens as: its user, everyone
CLOSE_TIMEOUT_SECONDS = 5.0  # served without `insight edge`: an ASGI close waits for the peer


class Refused(Exception):
    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def insight_socket(websocket: WebSocket) -> None:
    """The seed's `/api/v1/insight` WebSocket."""
    settings: Settings = websocket.app.state.settings
    hub: Hub | None = websocket.app.state.engine.hub
    presence: Presence | None = websocket.app.state.engine.presence
    offered = list(websocket.scope.get("subprotocols", []))
    since, clock, unavailable = (
        await _starting_point(websocket, hub) if hub is not None else ({}, None, True)
    )
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    connection: ClientConnection | None = None
    admitted = False  # counted in presence: given back when the socket closes
    try:
        _check_request(websocket, settings)
        if since is None:
            raise Refused(CloseCode.MALFORMED, "since is not a cursor")
        if unavailable or hub is None or presence is None:
            raise Refused(CloseCode.TRY_AGAIN_LATER, "event log unavailable")
        identity = await _authenticate(websocket, settings, offered)
        recipients = recipients_of(identity.user_id, identity.business_id)
        positions = [_position(r.letter, since, clock) for r in recipients]
        connection = ClientConnection(
            identity,
            recipients,
            positions,
            settings.ws_send_buffer,
            websocket.scope.get("extensions", {}).get(FRAME_WRITER_EXTENSION),
            since=websocket.query_params.get("since") or None,
            client=websocket.query_params.get("client") or None,
        )
        try:
            # Subscribed before the revocation and cap check: a revocation after the check
            # reaches this connection on its channel.
            await hub.listen(connection)
            async with asyncio.timeout(settings.ws_subscribe_timeout_seconds):
                admitted = _admitted(await presence.enter(identity, connection.client))
        except SubscribeTimeout as error:
            raise Refused(CloseCode.TRY_AGAIN_LATER, "subscription not confirmed") from error
        except Refused:
            raise  # revoked, or over the cap
        except Exception as error:  # a client that breaks in another way is no less down
            log_broker_failure("joining presence failed", error)
            raise Refused(CloseCode.TRY_AGAIN_LATER, "event log unavailable") from error
        logger.info(
            "websocket connected",
            extra={"user_id": identity.user_id, "business_id": identity.business_id},
        )
        code = await pump(websocket, connection, settings, hub, presence)
        logger.info(
            "websocket closing",
            extra={
                "user_id": identity.user_id,
                "close_code": int(code),
                "queued": connection.queued,
            },
        )
        telemetry.CLOSES.labels(str(int(code))).inc()
        if code == CloseCode.TRY_AGAIN_LATER:
            telemetry.record_dropped(connection.unsent())
        revoked = code == CloseCode.UNAUTHORIZED and connection in hub.revoked
        await _close(websocket, code, "revoked" if revoked else code.name.lower())
    except Refused as refusal:
        logger.info(
            "websocket refused", extra={"close_code": int(refusal.code), "reason": refusal.reason}
        )
        telemetry.CLOSES.labels(str(int(refusal.code))).inc()
        await _close(websocket, refusal.code, refusal.reason)
    except WebSocketDisconnect:
        pass
    finally:
        if connection is not None and hub is not None:
            hub.detach(connection)
        if admitted and connection is not None and presence is not None:
            presence.leave(connection.identity, connection.client)


def _admitted(admission: Admission) -> bool:
    if admission is Admission.REVOKED:
        raise Refused(CloseCode.UNAUTHORIZED, "revoked")
    if admission is Admission.OVER_CAP:
        raise Refused(CloseCode.TOO_MANY_CONNECTIONS, "too many connections")
    return True


async def _starting_point(
    websocket: WebSocket, hub: Hub
) -> tuple[dict[str, Position] | None, tuple[int, int] | None, bool]:
    """The positions `since` asks for (None if it is not a cursor), the Redis clock read
    before the upgrade is accepted, and whether Redis was unreachable.

    A log without a position in `since` is read from the clock reading on: whatever is
    published after the browser's `open` (or after a first frame, which can only follow it)
    is appended later, so its id is newer, and the catch-up that follows the subscription
    replays it. Starting from the logs' heads read after subscribing would lose what was
    published in between. The clock is read only when `since` lacks the user's or everyone's
    position (the business's is in it only when the session had one; see `_position`): a
    resume pays no extra Redis round trip before its upgrade."""
    requested = websocket.query_params.get("since")
    since = parse_cursor(requested) if requested else {}
    if since is None or since.keys() >= ALWAYS:
        return since, None, False
    try:
        # Bounded: a Redis that stalls (SIGSTOP, a long script) must not hold the handshake.
        async with asyncio.timeout(websocket.app.state.settings.ws_subscribe_timeout_seconds):
            return since, await hub.log.server_time(), False
    except Exception as error:  # never a 500 for the handshake: 1013 once it is accepted
        log_broker_failure("reading the redis clock failed", error)
        return since, None, True


def _position(kind: str, since: dict[str, Position], clock: tuple[int, int] | None) -> Position:
    """Where the connection starts in the log of `kind`: where `since` says, else from the
    clock read at the handshake; a resume with no clock read whose cursor lacks the
    business's position (the token names a business the resumed session had not) starts that
    log at the cursor's oldest position, so that nothing published since is missed."""
    if kind in since:
        return since[kind]
    if clock is not None:
        return start_position(kind, clock)
    oldest = min(position.key for position in since.values())
    return Position(kind, None, (oldest[0] - 1, MAX_SEQ))


def _check_request(websocket: WebSocket, settings: Settings) -> None:
    """Validate origin, channel and the query's shape."""
    if not settings.origin_allowed(websocket.headers.get("origin")):
        raise Refused(CloseCode.FORBIDDEN, "origin not allowed")
    params = websocket.query_params
    if any(len(params.getlist(name)) > 1 for name in ("channel", "since", "client")):
        raise Refused(CloseCode.MALFORMED, "repeated query parameter")
    client = params.get("client")
    if client is not None and not CLIENT_PATTERN.fullmatch(client):
        raise Refused(CloseCode.MALFORMED, f"client must be {CLIENT_RULE}")
    channel = params.get("channel") or DEFAULT_CHANNEL
    if channel not in CHANNELS:
        raise Refused(CloseCode.FORBIDDEN, "channel not allowed")


async def _authenticate(websocket: WebSocket, settings: Settings, offered: list[str]) -> Identity:
    """Token from the query, a `insight.bearer.<JWT>` subprotocol, or the first frame. A token
    offered in the query or a subprotocol that is not even shaped like one is refused at
    once, rather than left waiting for a first frame."""
    queried = websocket.query_params.get("token")
    bearer = any(p.startswith(BEARER_SUBPROTOCOL_PREFIX) for p in offered)
    token = well_formed_token(queried) if queried else token_from_subprotocols(offered)
    if token is None and (queried or bearer):
        raise Refused(CloseCode.UNAUTHORIZED, "invalid token")
    if token is None:
        try:
            async with asyncio.timeout(settings.ws_auth_timeout_seconds):
                message = await websocket.receive()
        except TimeoutError as error:
            raise Refused(CloseCode.UNAUTHORIZED, "no token") from error
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text")
        if text is None or len(text) > settings.ws_max_message_bytes:
            raise Refused(CloseCode.MALFORMED, "first frame must be an auth message")
        auth = auth_message(text)
        if auth is None:
            raise Refused(CloseCode.MALFORMED, "first frame must be an auth message")
        if auth.token is None:
            raise Refused(CloseCode.UNAUTHORIZED, "invalid token")
        token = auth.token
    try:
        return await verify_token_async(token, settings)
    except InvalidToken as error:
        raise Refused(CloseCode.UNAUTHORIZED, "invalid token") from error


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    """Close with `code`. Served by `insight edge`, this returns at once, and a peer that
    does not take the close frame in time is aborted (`edge.protocols.websocket`)."""
    if websocket.application_state == WebSocketState.DISCONNECTED:
        return
    with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError, TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await websocket.close(code=code, reason=reason[:120])
