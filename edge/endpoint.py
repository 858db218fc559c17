"""GET /api/v1/insight: authenticate, join the hub, and pump frames until one side stops.

Every refusal accepts the upgrade first and then closes with a code from `CloseCode`,
because a browser cannot read the HTTP status of a refused handshake (it only sees 1006).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.datastructures import Headers, QueryParams
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from core.config import Settings
from core.security import Identity, InvalidToken, verify_token_async
from edge.close_codes import CloseCode
from edge.connection import ClientConnection
from edge.frame_writer import FRAME_WRITER_EXTENSION, SocketWire
from edge.handshake import (
    BEARER_SUBPROTOCOL_PREFIX,
    CHANNELS,
    SUBPROTOCOL,
    auth_message,
    token_from_subprotocols,
    well_formed_client,
    well_formed_token,
)
from edge.hub import Hub
from edge.presence import Presence
from edge.pump import pump
from edge.session import Refused, ended, join, leave, refused, starting_point
from edge.socket_client import SocketClient
from realtime.frames import DEFAULT_CHANNEL
from realtime.ids import CLIENT_RULE

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT_SECONDS = 5.0  # served without `insight edge`: an ASGI close waits for the peer


async def insight_socket(websocket: WebSocket) -> None:
    """The seed's `/api/v1/insight` WebSocket."""
    settings: Settings = websocket.app.state.settings
    wire: SocketWire | None = websocket.scope.get("extensions", {}).get(FRAME_WRITER_EXTENSION)
    opened: tuple[ClientConnection, Hub, Presence] | None = None
    try:
        opened = connection, hub, presence = await _open(websocket, settings, wire)
        client = SocketClient(websocket, connection, settings, hub, presence, wire)
        code = await pump(connection, settings, hub, client, wire)
        await _close(websocket, code, ended(connection, code, hub, "websocket"))
    except Refused as refusal:
        refused(refusal, "websocket")
        await _close(websocket, refusal.code, refusal.reason)
    except WebSocketDisconnect:
        pass
    finally:
        if opened is not None:
            leave(*opened)


async def _open(
    websocket: WebSocket, settings: Settings, wire: SocketWire | None
) -> tuple[ClientConnection, Hub, Presence]:
    """Accept the socket, check its request, authenticate it and join the hub; raises
    Refused after accepting (or WebSocketDisconnect). A function of its own, and the query
    and headers read without Starlette's caches on the socket, so that what the handshake
    read (its token among it) is not held for the socket's life."""
    hub: Hub | None = websocket.app.state.engine.hub
    presence: Presence | None = websocket.app.state.engine.presence
    params = QueryParams(websocket.scope["query_string"])  # accepting frees the query too
    offered = list(websocket.scope.get("subprotocols", []))
    requested = params.get("since") or None
    origin = Headers(scope=websocket.scope).get("origin")  # accepting frees the headers
    start = await starting_point(requested, hub, settings) if hub is not None else ({}, None, True)
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    _check_request(params, settings, origin)
    if start[0] is None:
        raise Refused(CloseCode.MALFORMED, "since is not a cursor")
    if start[2] or hub is None or presence is None:
        raise Refused(CloseCode.TRY_AGAIN_LATER, "event log unavailable")
    identity = await _authenticate(websocket, params, settings, offered)
    connection = await join(
        identity, start, settings, hub, presence,
        wire=wire, since=requested, client=params.get("client") or None,
    )  # fmt: skip
    logger.info(
        "websocket connected",
        extra={"user_id": identity.user_id, "business_id": identity.business_id},
    )
    return connection, hub, presence


def _check_request(params: QueryParams, settings: Settings, origin: str | None) -> None:
    """Validate origin, channel and the query's shape."""
    if not settings.origin_allowed(origin):
        raise Refused(CloseCode.FORBIDDEN, "origin not allowed")
    if any(len(params.getlist(name)) > 1 for name in ("channel", "since", "client")):
        raise Refused(CloseCode.MALFORMED, "repeated query parameter")
    if "client" in params and well_formed_client(params["client"]) is None:
        raise Refused(CloseCode.MALFORMED, f"client must be {CLIENT_RULE}")
    channel = params.get("channel") or DEFAULT_CHANNEL
    if channel not in CHANNELS:
        raise Refused(CloseCode.FORBIDDEN, "channel not allowed")


async def _authenticate(
    websocket: WebSocket, params: QueryParams, settings: Settings, offered: list[str]
) -> Identity:
    """Token from the query, a `insight.bearer.<JWT>` subprotocol, or the first frame. A token
    offered in the query or a subprotocol that is not even shaped like one is refused at
    once, rather than left waiting for a first frame."""
    queried = params.get("token")
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
