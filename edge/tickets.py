"""POST /api/v1/insight/tickets: a page's JWT traded for a ticket that opens one SSE stream.

`EventSource` cannot set an `Authorization` header, and a JWT in a URL is written to access
logs, proxies' logs and the browser's history. A ticket is good for one stream, opened within
SSE_TICKET_SECONDS, by the user whose JWT bought it: kept in Redis by the broker
(`realtime.broker.ticket_calls`: in the user's hash slot, spent by one atomic read-and-delete),
so every edge accepts it and a replay gets 401. It carries the token's identity (user,
business, `exp`, `iat`), so the stream it opens ends at the token's expiry and is revoked with
the user's sessions, like a WebSocket's.

A ticket is `<secret>.<user id, base64url>`: the user part only finds the key (a forged one
finds nothing), and nothing in it is trusted before the spend returns the identity.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import secrets
import time

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from core.config import Settings
from core.security import Identity, InvalidToken, accepted_until, verify_token_async
from edge.handshake import bearer_token
from edge.http_answers import refusal
from edge.pump import log_broker_failure
from realtime.broker import TicketStore
from realtime.ids import check_id

logger = logging.getLogger(__name__)

_SECRET = re.compile(r"[A-Za-z0-9_-]{32}")
MAX_TICKET_LENGTH = 33 + 4 * 1024 // 3 + 4  # the secret, a dot, a 1 KiB id in base64url


async def tickets_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer a ticket for the Bearer JWT's user, or a JSON refusal."""
    request = Request(scope, receive)
    answer = await _answer(request)
    await answer(scope, receive, send)


async def _answer(request: Request) -> JSONResponse:
    if request.method != "POST":
        return refusal(405, "use POST")
    settings: Settings = request.app.state.settings
    broker, presence = request.app.state.engine.broker, request.app.state.engine.presence
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        return refusal(401, "a Bearer token is required", "Authorization")
    try:
        identity = await verify_token_async(token, settings)
    except InvalidToken:
        return refusal(401, "invalid token", "Authorization")
    if broker is None or presence is None:
        return refusal(503, "event log unavailable")
    try:
        async with asyncio.timeout(settings.ws_subscribe_timeout_seconds):
            # A revoked token buys nothing: its page hears 401 here, where fetch can read it
            # (a refused EventSource only says "error"), and asks getToken for a new one.
            if await presence.revoked(identity):
                return refusal(401, "token revoked", "Authorization")
            ticket = await issue(broker.tickets, identity, settings.sse_ticket_seconds)
    except Exception as error:  # a Redis error or a timeout: never a 500
        log_broker_failure("issuing a ticket failed", error)
        return refusal(503, "event log unavailable")
    logger.info("ticket issued", extra={"user_id": identity.user_id})
    body = {"ticket": ticket, "expires_in": settings.sse_ticket_seconds}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


async def issue(tickets: TicketStore, identity: Identity, ttl_seconds: int) -> str:
    """A new ticket standing for `identity`, kept for `ttl_seconds`."""
    secret = secrets.token_urlsafe(24)
    user = base64.urlsafe_b64encode(identity.user_id.encode()).decode().rstrip("=")
    await tickets.issue(identity.user_id, secret, _encode(identity), ttl_seconds * 1000)
    return f"{secret}.{user}"


async def redeem(tickets: TicketStore, ticket: str, settings: Settings) -> Identity | None:
    """The identity `ticket` stands for, spending it; None for a ticket that is malformed,
    unknown, spent, expired, or whose token has expired since. Broker errors propagate."""
    parts = _parse(ticket)
    if parts is None:
        return None
    secret, user_id = parts
    stored = await tickets.spend(user_id, secret)
    if stored is None:
        return None
    identity = _decode(stored)
    if identity.user_id != user_id or accepted_until(identity, settings) <= time.time():
        return None
    return identity


def _parse(ticket: str) -> tuple[str, str] | None:
    """(secret, user id) of a ticket shaped like one; None for anything else."""
    if len(ticket) > MAX_TICKET_LENGTH or not ticket.isascii():
        return None
    secret, dot, user = ticket.partition(".")
    if not dot or not _SECRET.fullmatch(secret):
        return None
    try:
        user_id = base64.urlsafe_b64decode(user + "=" * (-len(user) % 4)).decode()
        return secret, check_id(user_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def _encode(identity: Identity) -> str:
    return json.dumps(
        {
            "sub": identity.user_id,
            "business_id": identity.business_id,
            "name": identity.name,
            "exp": identity.expires_at,
            "iat": identity.issued_at,
        }
    )


def _decode(stored: str) -> Identity:
    claims = json.loads(stored)
    return Identity(
        user_id=claims["sub"],
        business_id=claims["business_id"],
        name=claims["name"],
        expires_at=float(claims["exp"]),
        issued_at=None if claims["iat"] is None else float(claims["iat"]),
    )
