"""A WebSocket session's client as `edge.pump` sees it (`pump.Client`): what the client
sends, read (an `auth` message renews the session in band), and frames sent through ASGI
when the socket has no wire (served other than by `insight edge`).
"""

from __future__ import annotations

import logging

import redis
from starlette.websockets import WebSocket, WebSocketDisconnect

from core.config import Settings
from core.security import Identity, InvalidToken, accepted_until, verify_token_async
from edge.close_codes import CloseCode
from edge.connection import ClientConnection
from edge.expiry import Expiry
from edge.frame_writer import SocketWire
from edge.handshake import auth_message
from edge.hub import Hub
from edge.presence import Presence

logger = logging.getLogger(__name__)


class SocketClient:
    """The client of one open socket; its slots are all a session holds to read it."""

    __slots__ = ("_arrivals", "_connection", "_hub", "_presence", "_settings", "_websocket")

    def __init__(
        self,
        websocket: WebSocket,
        connection: ClientConnection,
        settings: Settings,
        hub: Hub,
        presence: Presence,
        arrivals: SocketWire | None,
    ) -> None:
        self._websocket = websocket
        self._connection = connection
        self._settings = settings
        self._hub = hub
        self._presence = presence
        self._arrivals = arrivals

    async def send(self, frame: bytes) -> None:
        await self._websocket.send({"type": "websocket.send", "text": frame.decode()})

    async def read(self, expiry: Expiry) -> None:
        """Read inbound frames: an `auth` message renews the session (a later `exp`);
        anything else is ignored. Ends the session on a frame that is too big or a renewal
        refused, or when the peer goes away. With the socket's notice of arrivals, returns
        once no message waits."""
        connection, arrivals = self._connection, self._arrivals
        try:
            while arrivals is None or arrivals.has_arrivals():
                message = await self._websocket.receive()
                if message["type"] == "websocket.disconnect":
                    raise WebSocketDisconnect(message.get("code", 1000))
                text = message.get("text")
                if len(text or message.get("bytes") or "") > self._settings.ws_max_message_bytes:
                    connection.close(CloseCode.MESSAGE_TOO_BIG)
                    return
                auth = auth_message(text) if text is not None else None
                if auth is None or auth.token is None:
                    continue  # not a renewal: the session goes on
                if not await self._renew(auth.token, expiry):
                    return
        except WebSocketDisconnect:
            connection.hang_up()
            raise

    async def _renew(self, token: str, expiry: Expiry) -> bool:
        """Extend the session to `token`'s expiry; False if the session was closed instead:
        4401 for a token that may not renew it (`revoked` for one the user's revocation
        refuses), 1013 when the revocation cannot be checked."""
        connection = self._connection
        identity = await _renewed(connection.identity, token, self._settings)
        if identity is None:
            logger.info("websocket renewal refused", extra={"user_id": connection.identity.user_id})
            connection.close(CloseCode.UNAUTHORIZED)
            return False
        try:
            revoked = await self._presence.revoked(identity)
        except redis.RedisError:
            connection.close(CloseCode.TRY_AGAIN_LATER)  # unchecked: never accepted
            return False
        if revoked:
            logger.info("websocket renewal revoked", extra={"user_id": connection.identity.user_id})
            self._hub.close_revoked(connection)
            return False
        connection.identity = identity
        expiry.move(accepted_until(identity, self._settings))
        return True


async def _renewed(current: Identity, token: str, settings: Settings) -> Identity | None:
    """The identity of an in-band `auth` message if it may extend this session: a valid
    token for the same user and business. None closes the socket with 4401."""
    try:
        identity = await verify_token_async(token, settings)
    except InvalidToken:
        return None
    if (identity.user_id, identity.business_id) != (current.user_id, current.business_id):
        return None
    return identity
