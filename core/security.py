"""Issue and verify the JWT that authenticates both the job API and the WebSocket.

The verifying key and the accepted algorithms come from configuration, never from the token,
so a token cannot choose its own verification (no `alg: none`, no RS/HS confusion):

- one key: `JWT_SECRET` (HS*) or `JWT_PUBLIC_KEY` (RS*/ES*), for the one `JWT_ALGORITHM`;
- an identity provider's key set, `JWT_JWKS_URL`: the key is the one whose `kid` the token
  names, among the set's RSA and EC signing keys. The token's `alg` must be in the allow-list
  (`JWT_ALGORITHMS`, default `JWT_ALGORITHM`) and equal the key's own algorithm.

The key set is `core.jwks`'s.

`verify_token` is synchronous: with the key cached it does no I/O and takes no lock, so async
code may call it; when a fetch is needed it waits for it (at most `JWKS_TIMEOUT_SECONDS`).
`verify_token_async` is the same verification for asyncio code: a fetch runs in its own
thread, and the event loop only awaits it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from jwt import PyJWK

from core.config import Settings
from core.jwks import KeyRefused, jwks_key_set
from realtime.ids import check_id

MAX_KID_LENGTH = 256


class InvalidToken(Exception):
    """The token is missing, malformed, expired, or not signed by us."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified token speaks for."""

    user_id: str
    business_id: str | None
    name: str | None
    expires_at: float
    issued_at: float | None = None  # `iat`, when the token has one


def accepted_until(identity: Identity, settings: Settings) -> float:
    """When the identity's token stops being accepted: its `exp` plus JWT_LEEWAY_SECONDS, the
    leeway `exp` is checked with. An open socket is closed then."""
    return identity.expires_at + settings.jwt_leeway_seconds


def issued_before(identity: Identity, mark: int) -> bool:
    """Whether a revocation mark (`realtime.presence`: Unix seconds, by the Redis clock)
    refuses this identity's token: one issued in or before that second (`iat` has second
    resolution, so a token of the same second may be older than the revocation), or one
    without `iat`, whose age nobody knows."""
    return identity.issued_at is None or math.floor(identity.issued_at) <= mark


def verify_token(token: str, settings: Settings) -> Identity:
    """Verify signature, expiry, audience and issuer; raise InvalidToken otherwise.

    With `JWT_JWKS_URL` this may wait for a fetch of the key set (bounded by
    `JWKS_TIMEOUT_SECONDS`); asyncio code should await `verify_token_async` instead.
    """
    if settings.jwt_jwks_url is None:
        return _decode(token, _configured_key(settings), settings)
    kid, alg = _jwks_header(token, settings)
    try:
        key = jwks_key_set(settings).signing_key(kid, alg)
    except KeyRefused as refused:
        raise InvalidToken(str(refused)) from None
    return _decode(token, key, settings)


async def verify_token_async(token: str, settings: Settings) -> Identity:
    """`verify_token` for asyncio code: a key-set fetch never blocks the event loop."""
    if settings.jwt_jwks_url is None:
        return _decode(token, _configured_key(settings), settings)
    kid, alg = _jwks_header(token, settings)
    try:
        key = await jwks_key_set(settings).signing_key_async(kid, alg)
    except KeyRefused as refused:
        raise InvalidToken(str(refused)) from None
    return _decode(token, key, settings)


def _configured_key(settings: Settings) -> str:
    if settings.jwt_public_key is not None and not settings.jwt_algorithm.startswith("HS"):
        return settings.jwt_public_key.get_secret_value()
    return settings.jwt_secret.get_secret_value()


def _jwks_header(token: str, settings: Settings) -> tuple[str, str]:
    """The token's `kid` and `alg`, refused before any key lookup (or fetch) when unusable."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as error:
        raise InvalidToken(type(error).__name__) from error
    alg, kid = header.get("alg"), header.get("kid")
    if not isinstance(alg, str) or alg not in settings.accepted_algorithms:
        raise InvalidToken("algorithm not allowed")
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH:
        raise InvalidToken("kid missing or malformed")
    return kid, alg


def _decode(token: str, key: str | PyJWK, settings: Settings) -> Identity:
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=list(settings.accepted_algorithms),
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway_seconds,  # on exp, nbf and iat: clocks differ
            options={
                "require": ["exp", "sub"],
                "verify_aud": settings.jwt_audience is not None,
            },
        )
    except jwt.PyJWTError as error:
        raise InvalidToken(type(error).__name__) from error
    identity = _identity(claims)
    # A revocation mark lasts about JWT_MAX_TTL_SECONDS: a token living longer could outlive
    # it. Without `iat`, the lifetime left is what counts. With an `iat` ahead of our clock
    # (by at most the leeway, checked above), the lifetime is still the one its issuer gave:
    # the seconds it gains over ours are the leeway's, which the mark's keep covers
    # (`Settings.revocation_keep_seconds`).
    issued = time.time() if identity.issued_at is None else identity.issued_at
    lifetime = identity.expires_at - issued
    if lifetime > settings.jwt_max_ttl_seconds:
        raise InvalidToken("token lifetime over JWT_MAX_TTL_SECONDS")
    return identity


def _identity(claims: Mapping[str, Any]) -> Identity:
    """The token's identity, its ids checked here by the one rule (`realtime.ids`), so that an id
    nothing downstream could serve is refused with the token rather than failing later (a
    socket that breaks after its upgrade, a job that cannot publish)."""
    business_id = claims.get("business_id")
    name = claims.get("name")
    sub = _id_claim(claims["sub"], "sub")
    if business_id is not None:
        business_id = _id_claim(business_id, "business_id")
    if name is not None and not isinstance(name, str):
        raise InvalidToken("name must be a string")
    iat = claims.get("iat")
    return Identity(
        user_id=sub,
        business_id=business_id,
        name=name,
        expires_at=float(claims["exp"]),
        issued_at=None if iat is None else float(iat),
    )


def _id_claim(value: object, claim: str) -> str:
    try:
        return check_id(value)
    except ValueError as error:
        raise InvalidToken(f"{claim} {error}") from None


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
