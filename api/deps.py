"""Dependencies: who is calling (a user's Bearer JWT, or a server key for the server API), a
database session per request, and what several job routes share (the Idempotency-Key header,
the caller's own order)."""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr
from sqlalchemy.orm import Session

from api.refusals import REDIS_FAILURES, RETRY_AFTER_SECONDS
from core.config import Settings
from core.db import new_session
from core.models import Order, row_id
from core.security import Identity, InvalidToken, issued_before, verify_token_async
from realtime.ids import CLIENT_PATTERN, CLIENT_RULE
from realtime.publisher import default_async_event_log
from realtime.revocation import revocation_mark_async

_bearer = HTTPBearer(auto_error=False, description="A JWT; `insight token` mints one.")
_server_key = HTTPBearer(
    auto_error=False,
    scheme_name="ServerKey",
    description="A server key: one of PUBLISH_API_KEYS (never a user's JWT).",
)


async def get_app_settings(request: Request) -> Settings:
    """Async though it awaits nothing: FastAPI runs a plain `def` dependency in its
    threadpool, a thread hop per request for a read of app state."""
    settings: Settings = request.app.state.settings
    return settings


async def current_user(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    settings: Annotated[Settings, Depends(get_app_settings)],
) -> Identity:
    """The caller, by the same verification as the edge's (core.security).

    Async, as at the edge: a cached key verifies without I/O, a fetch of the identity
    provider's key set (JWT_JWKS_URL) is awaited, and the revocation mark is read on the
    process's asyncio connection. A sync dependency cost every request a thread hop.
    """
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing bearer token", {"WWW-Authenticate": "Bearer"}
        )
    try:
        identity = await verify_token_async(credentials.credentials, settings)
    except InvalidToken:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid or expired token",
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from None
    await _refuse_revoked(identity)
    return identity


async def _refuse_revoked(identity: Identity) -> None:
    """A token that its user's revocation refuses (POST /users/{id}/disconnect) is a 401,
    as at the edge; one GET of the user's mark, on the process's events connection."""
    try:
        log = await default_async_event_log()
        mark = await revocation_mark_async(log.driver, identity.user_id)
    except REDIS_FAILURES:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the revocation check (the events Redis) did not answer",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from None
    if mark is not None and issued_before(identity, mark):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "token revoked",
            {"WWW-Authenticate": 'Bearer error="invalid_token", error_description="revoked"'},
        )


async def server_key(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_server_key)],
    settings: Annotated[Settings, Depends(get_app_settings)],
) -> None:
    """The caller holds one of PUBLISH_API_KEYS: the server API's only credential.

    Every key is compared, in constant time, by its SHA-256 digest, so neither where a guess
    first differs nor how long the keys are shows in the time taken. A user's valid JWT is
    refused with 403, not 401: the caller is known, and a new token would not help.
    """
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing server key", {"WWW-Authenticate": "Bearer"}
        )
    if is_server_key(credentials.credentials, settings):
        return
    try:
        await verify_token_async(credentials.credentials, settings)
    except InvalidToken:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "unknown server key",
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from None
    raise HTTPException(
        status.HTTP_403_FORBIDDEN,
        "a user's token is not a server credential: use a key from PUBLISH_API_KEYS",
    )


def is_server_key(presented: str, settings: Settings) -> bool:
    """Whether `presented` is one of PUBLISH_API_KEYS: every key compared, in constant time,
    by its SHA-256 digest."""
    digest = hashlib.sha256(presented.encode()).digest()
    known = False
    for expected in _digests(settings.publish_keys):
        known |= hmac.compare_digest(digest, expected)
    return known


@functools.lru_cache(maxsize=4)
def _digests(keys: tuple[SecretStr, ...]) -> tuple[bytes, ...]:
    """The keys' digests, made once per set of keys rather than on every request."""
    return tuple(hashlib.sha256(key.get_secret_value().encode()).digest() for key in keys)


def db_session() -> Iterator[Session]:
    """The request's session. A sync generator, closed by FastAPI in a thread of its own
    limiter: a close that waited for the request threadpool, while every thread there waited
    for a pooled connection that such a session held, would never come (an async version,
    tried, hung 300 concurrent payments)."""
    session = new_session()
    try:
        yield session
    finally:
        session.close()


CurrentUser = Annotated[Identity, Depends(current_user)]
SessionDep = Annotated[Session, Depends(db_session)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Repeat a submission safely: the same key and body return the first job.",
    ),
]


InsightClient = Annotated[
    str | None,
    Header(
        alias="Insight-Client",
        pattern=CLIENT_PATTERN.pattern,
        description=(
            "The browser tab submitting the job (insight.js adds it): the job's redirect and "
            f"modal go to that tab only while it is connected. {CLIENT_RULE}."
        ),
    ),
]


def find_own_order(session: Session, order_id: str, user_id: str) -> Order:
    """The caller's order by its id in the URL or body; 404 for a malformed id or anyone else's."""
    key = row_id(order_id)
    order = session.get(Order, key) if key is not None else None
    if order is None or order.user_id != user_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"order {order_id} not found")
    return order
