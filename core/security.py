"""Issue and verify the JWT that authenticates both the job API and the WebSocket.

The verifying key and the accepted algorithms come from configuration, never from the token,
so a token cannot choose its own verification (no `alg: none`, no RS/HS confusion):

- one key: `JWT_SECRET` (HS*) or `JWT_PUBLIC_KEY` (RS*/ES*), for the one `JWT_ALGORITHM`;
- an identity provider's key set, `JWT_JWKS_URL`: the key is the one whose `kid` the token
  names, among the set's RSA and EC signing keys. The token's `alg` must be in the allow-list
  (`JWT_ALGORITHMS`, default `JWT_ALGORITHM`) and equal the key's own algorithm.

The key set (one `JwksKeySet` per process and URL) is cached. It is fetched again when a token
names an unknown `kid` and when it is older than `JWKS_MAX_AGE_SECONDS`, so a rotation (a key
added, another removed) takes effect without a restart; but never more than once per
`JWKS_MIN_REFETCH_SECONDS`, however many tokens with made-up `kid`s arrive. A failed fetch
keeps the last set (sessions on known keys keep working while the provider is unreachable);
a key that is not in it fails closed with `InvalidToken`.

`verify_token` is synchronous: with the key cached it does no I/O and takes no lock, so async
code may call it; when a fetch is needed it waits for it (at most `JWKS_TIMEOUT_SECONDS`).
`verify_token_async` is the same verification for asyncio code: a fetch runs in its own
thread, and the event loop only awaits it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import jwt
from jwt import PyJWK, PyJWKClient, PyJWKSet

from core.config import Settings
from realtime.ids import check_id

logger = logging.getLogger(__name__)

MAX_KID_LENGTH = 256
_JWKS_KEY_TYPES = frozenset({"RSA", "EC"})  # never "oct": a published symmetric key is no key


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
    return _decode(token, jwks_key_set(settings).signing_key(kid, alg), settings)


async def verify_token_async(token: str, settings: Settings) -> Identity:
    """`verify_token` for asyncio code: a key-set fetch never blocks the event loop."""
    if settings.jwt_jwks_url is None:
        return _decode(token, _configured_key(settings), settings)
    kid, alg = _jwks_header(token, settings)
    key = await jwks_key_set(settings).signing_key_async(kid, alg)
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


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """One fetched key set: signing keys by `kid`, and when it was fetched (monotonic)."""

    keys: Mapping[str, tuple[PyJWK, ...]]
    fetched_at: float


class JwksKeySet:
    """An identity provider's signing keys, cached, refetched on demand and rate-limited.

    Thread-safe and shared by every thread and event loop of the process. Reading a cached
    key takes no lock; a fetch runs in its own thread, and every caller that needs it waits
    for that one fetch (joining it, never starting a second), for at most `timeout` seconds.
    PyJWT does the HTTP (`PyJWKClient.fetch_data`: http(s) only, no redirects, a timeout)
    and the JWK parsing (`PyJWKSet`); this class decides when to fetch.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        min_refetch_seconds: float,
        max_age_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.min_refetch_seconds = min_refetch_seconds
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        self._client = PyJWKClient(
            url, cache_jwk_set=False, timeout=timeout, headers={"User-Agent": "insight-jwks"}
        )
        self._snapshot: _Snapshot | None = None
        self._lock = threading.Lock()  # guards the fields below; never held during I/O
        self._last_attempt: float | None = None
        self._inflight: Future[bool] | None = None

    def signing_key(self, kid: str, alg: str) -> PyJWK:
        """The key for `kid` and `alg`, fetching the set first when needed (blocking)."""
        cached = self._cached(kid, alg)
        if cached is not None:
            return cached
        fetch = self._fetch_to_wait_for(kid)
        if fetch is not None:
            try:
                fetch.result(timeout=self.timeout)
            except FutureTimeout:
                self._log_slow_fetch()
        return self._known(kid, alg)

    async def signing_key_async(self, kid: str, alg: str) -> PyJWK:
        """`signing_key` for asyncio code: the event loop awaits the fetch thread."""
        cached = self._cached(kid, alg)
        if cached is not None:
            return cached
        fetch = self._fetch_to_wait_for(kid)
        if fetch is not None:
            try:
                await asyncio.wait_for(asyncio.wrap_future(fetch), self.timeout)
            except TimeoutError:
                self._log_slow_fetch()
        return self._known(kid, alg)

    def _cached(self, kid: str, alg: str) -> PyJWK | None:
        """The key from a set younger than the maximum age, or None when a fetch may help.

        No lock, no I/O. A known `kid` with another algorithm is refused without a fetch.
        """
        snapshot = self._fresh_snapshot()
        if snapshot is None or kid not in snapshot.keys:
            return None
        if (key := _matching(snapshot, kid, alg)) is None:
            raise InvalidToken("algorithm does not match the key")
        return key

    def _fresh_snapshot(self) -> _Snapshot | None:
        snapshot = self._snapshot
        if snapshot is None or self._clock() - snapshot.fetched_at >= self.max_age_seconds:
            return None
        return snapshot

    def _known(self, kid: str, alg: str) -> PyJWK:
        """After any fetch: the key from the newest set held, however old, or InvalidToken."""
        snapshot = self._snapshot
        if snapshot is not None:
            if (key := _matching(snapshot, kid, alg)) is not None:
                return key
            if kid in snapshot.keys:
                raise InvalidToken("algorithm does not match the key")
        raise InvalidToken("no key with this kid")

    def _fetch_to_wait_for(self, kid: str) -> Future[bool] | None:
        """The fetch in flight, or a new one if the rate limit allows it; else None."""
        with self._lock:
            if self._inflight is not None:
                return self._inflight
            fresh = self._fresh_snapshot()
            if fresh is not None and kid in fresh.keys:
                return None  # a fetch finished meanwhile and brought the key
            now = self._clock()
            if (
                self._last_attempt is not None
                and now - self._last_attempt < self.min_refetch_seconds
            ):
                return None
            snapshot = self._snapshot
            if snapshot is None:
                reason = "initial"
            elif kid in snapshot.keys:
                reason = "max_age"
            else:
                reason = "unknown_kid"
            self._last_attempt = now
            fetch: Future[bool] = Future()
            fetch.set_running_or_notify_cancel()  # so a waiter that gives up cannot cancel it
            self._inflight = fetch
        threading.Thread(
            target=self._fetch, args=(fetch, reason), name="jwks-fetch", daemon=True
        ).start()
        return fetch

    def _fetch(self, fetch: Future[bool], reason: str) -> None:
        started = time.monotonic()
        snapshot: _Snapshot | None = None
        try:
            jwk_set = PyJWKSet.from_dict(self._client.fetch_data())
            snapshot = _Snapshot(_signing_keys(jwk_set), self._clock())
        except Exception as error:  # any failure keeps the last set; the caller fails closed
            logger.warning(
                "jwks fetch failed",
                extra={
                    "jwks_url": self.url,
                    "reason": reason,
                    "error": type(error).__name__,
                    "detail": str(error)[:300],
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                    "keys_held": 0 if self._snapshot is None else len(self._snapshot.keys),
                },
            )
        else:
            logger.info(
                "jwks fetched",
                extra={
                    "jwks_url": self.url,
                    "reason": reason,
                    "kids": sorted(snapshot.keys),
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                },
            )
        finally:
            with self._lock:
                if snapshot is not None:
                    self._snapshot = snapshot
                self._inflight = None
            fetch.set_result(snapshot is not None)

    def _log_slow_fetch(self) -> None:
        # Debug only: every waiter of one slow fetch gets here; the fetch logs its own failure.
        logger.debug(
            "jwks fetch still running; token refused unless its key is held",
            extra={"jwks_url": self.url, "timeout_seconds": self.timeout},
        )


def _signing_keys(jwk_set: PyJWKSet) -> dict[str, tuple[PyJWK, ...]]:
    keys: dict[str, tuple[PyJWK, ...]] = {}
    for key in jwk_set.keys:
        kid = key.key_id
        if (
            isinstance(kid, str)
            and kid
            and key.key_type in _JWKS_KEY_TYPES
            and key.public_key_use in ("sig", None)
        ):
            keys[kid] = (*keys.get(kid, ()), key)
    return keys


def _matching(snapshot: _Snapshot, kid: str, alg: str) -> PyJWK | None:
    return next((key for key in snapshot.keys.get(kid, ()) if key.algorithm_name == alg), None)


_key_sets: dict[tuple[str, float, float, float], JwksKeySet] = {}
_key_sets_lock = threading.Lock()


def jwks_key_set(settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> JwksKeySet:
    """The process's key set for `settings.jwt_jwks_url`, made on first use.

    `clock` (monotonic seconds) is used only by the call that makes it (tests).
    """
    url = settings.jwt_jwks_url
    if url is None:
        raise ValueError("JWT_JWKS_URL is not set")
    config = (
        url,
        settings.jwks_timeout_seconds,
        settings.jwks_min_refetch_seconds,
        settings.jwks_max_age_seconds,
    )
    key_set = _key_sets.get(config)
    if key_set is None:
        with _key_sets_lock:
            key_set = _key_sets.get(config)
            if key_set is None:
                key_set = _key_sets[config] = JwksKeySet(
                    url,
                    timeout=settings.jwks_timeout_seconds,
                    min_refetch_seconds=settings.jwks_min_refetch_seconds,
                    max_age_seconds=settings.jwks_max_age_seconds,
                    clock=clock,
                )
    return key_set


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
