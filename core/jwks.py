"""An identity provider's signing keys (JWT_JWKS_URL), cached, refetched on demand and
rate-limited, for `core.security`'s verification.

The key set (one `JwksKeySet` per process and URL) is cached. It is fetched again when a token
names an unknown `kid` and when it is older than `JWKS_MAX_AGE_SECONDS`, so a rotation (a key
added, another removed) takes effect without a restart; but never more than once per
`JWKS_MIN_REFETCH_SECONDS`, however many tokens with made-up `kid`s arrive. A failed fetch
keeps the last set (sessions on known keys keep working while the provider is unreachable);
a key that is not in it fails closed (`KeyRefused`: the token is refused).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from jwt import PyJWK, PyJWKClient, PyJWKSet

from core.config import Settings

logger = logging.getLogger(__name__)

_JWKS_KEY_TYPES = frozenset({"RSA", "EC"})  # never "oct": a published symmetric key is no key


class KeyRefused(Exception):
    """No key of the set may verify the token (an unknown `kid`, or another algorithm)."""


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
            raise KeyRefused("algorithm does not match the key")
        return key

    def _fresh_snapshot(self) -> _Snapshot | None:
        snapshot = self._snapshot
        if snapshot is None or self._clock() - snapshot.fetched_at >= self.max_age_seconds:
            return None
        return snapshot

    def _known(self, kid: str, alg: str) -> PyJWK:
        """After any fetch: the key from the newest set held, however old, or KeyRefused."""
        snapshot = self._snapshot
        if snapshot is not None:
            if (key := _matching(snapshot, kid, alg)) is not None:
                return key
            if kid in snapshot.keys:
                raise KeyRefused("algorithm does not match the key")
        raise KeyRefused("no key with this kid")

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
