"""Issue and verify the JWT that authenticates both the job API and the WebSocket.

The algorithm comes from configuration and is the only one accepted, so a token
cannot choose its own verification (no `alg: none`, no RS/HS confusion).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from core.config import Settings


class InvalidToken(Exception):
    """The token is missing, malformed, expired, or not signed by us."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified token speaks for."""

    user_id: str
    business_id: str | None
    name: str | None
    expires_at: float


def verify_token(token: str, settings: Settings) -> Identity:
    """Verify signature, expiry, audience and issuer; raise InvalidToken otherwise."""
    key = (
        settings.jwt_public_key.get_secret_value()
        if settings.jwt_public_key is not None and not settings.jwt_algorithm.startswith("HS")
        else settings.jwt_secret.get_secret_value()
    )
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[settings.jwt_algorithm],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={
                "require": ["exp", "sub"],
                "verify_aud": settings.jwt_audience is not None,
            },
        )
    except jwt.PyJWTError as error:
        raise InvalidToken(type(error).__name__) from error
    business_id = claims.get("business_id")
    name = claims.get("name")
    sub = claims["sub"]
    if not isinstance(sub, str) or not sub:
        raise InvalidToken("sub must be a non-empty string")
    if business_id is not None and not (isinstance(business_id, str) and business_id):
        raise InvalidToken("business_id must be a non-empty string")
    if name is not None and not isinstance(name, str):
        raise InvalidToken("name must be a string")
    return Identity(
        user_id=sub, business_id=business_id, name=name, expires_at=float(claims["exp"])
    )


def issue_token(
    settings: Settings,
    user_id: str,
    *,
    business_id: str | None = None,
    name: str | None = None,
    ttl_seconds: int = 3600,
) -> str:
    """Mint a token the services accept (development tools and tests)."""
    now = int(time.time())
    claims: dict[str, object] = {"sub": user_id, "iat": now, "exp": now + ttl_seconds}
    if business_id is not None:
        claims["business_id"] = business_id
    if name is not None:
        claims["name"] = name
    if settings.jwt_audience is not None:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer is not None:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_algorithm.startswith("HS"):
        key = settings.jwt_secret.get_secret_value()
    elif settings.jwt_private_key is not None:
        key = settings.jwt_private_key.get_secret_value()
    else:
        raise InvalidToken(f"issuing {settings.jwt_algorithm} tokens needs JWT_PRIVATE_KEY")
    return jwt.encode(claims, key, algorithm=settings.jwt_algorithm)
