"""Tokens from an identity provider (JWT_JWKS_URL), against a real local HTTP JWKS server.

The server is `http.server` on a free port, serving a key set the test changes as a provider
rotates its keys, and counting the requests it answers. Time, for the refetch interval and the
maximum age, is a clock the test advances; the network is real.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError

from cli.local_redis import LocalRedis, free_port
from core.config import Settings
from core.jwks import jwks_key_set
from core.security import InvalidToken, verify_token, verify_token_async
from edge.close_codes import CloseCode
from realtime import UIManager
from tests.harness import (
    TEST_AUDIENCE,
    TEST_ISSUER,
    Client,
    Edge,
    ServerProcess,
    base_env,
    settings_for,
    unique,
)
from tests.stack import fresh_database

# --- the identity provider: keys, tokens, and its JWKS endpoint ------------------------------


@cache
def _rsa_private(index: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def _ec_private(index: int) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass(frozen=True)
class SigningKey:
    """One key of the provider: its private half signs, its public JWK is published."""

    kid: str
    alg: str
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    @property
    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            data = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
        else:
            data = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
        return {**data, "kid": self.kid, "alg": self.alg, "use": "sig"}

    @property
    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, claims: dict[str, Any] | None = None, **header: Any) -> str:
        return jwt.encode(
            _claims() if claims is None else claims,
            self.private,
            algorithm=header.pop("alg", self.alg),
            headers={"kid": self.kid, **header},
        )


def rsa_key(kid: str, index: int = 0) -> SigningKey:
    return SigningKey(kid, "RS256", _rsa_private(index))


def ec_key(kid: str, index: int = 0) -> SigningKey:
    return SigningKey(kid, "ES256", _ec_private(index))


def _claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "sub": "42", "exp": int(time.time()) + 600, "aud": TEST_AUDIENCE, "iss": TEST_ISSUER,
    }  # fmt: skip
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge_hs256(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """HS256 signed with a public key as the HMAC secret (PyJWT refuses to make one)."""
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _sign_raw(header: dict[str, Any], claims: dict[str, Any], key: SigningKey) -> str:
    """RS256 over any header, even one PyJWT would refuse to write."""
    assert isinstance(key.private, rsa.RSAPrivateKey)
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signer = jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256)
    return f"{signing_input}.{_b64(signer.sign(signing_input.encode(), key.private))}"


class JwksServer:
    """A real HTTP JWKS endpoint on a free port: `publish` changes the set, `requests` counts
    the fetches it answered, `stop` makes the URL unreachable."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.requests = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.requests += 1
                    body = json.dumps(server.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        # The process keeps one key set per URL, and a later test's server may get this port:
        # a path of its own keeps each test's key set (and its clock) its own.
        port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{port}/{unique('provider')}/.well-known/jwks.json"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self._running = True

    def publish(self, *keys: SigningKey, extra: list[dict[str, Any]] | None = None) -> None:
        with self._lock:
            self.document = {"keys": [key.jwk for key in keys] + (extra or [])}

    def stop(self) -> None:
        if self._running:
            self._running = False
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(5)


class Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


MIN_REFETCH = 5.0
MAX_AGE = 300.0


def jwks_settings(url: str, clock: Clock | None = None, **overrides: Any) -> Settings:
    """Settings for `url`; with `clock`, the process's key set for them runs on that clock."""
    values: dict[str, Any] = {
        "jwt_jwks_url": url,
        "jwt_algorithms": ["RS256", "ES256"],
        "jwks_timeout_seconds": 1.0,
        "jwks_min_refetch_seconds": MIN_REFETCH,
        "jwks_max_age_seconds": MAX_AGE,
        **overrides,
    }
    settings = settings_for("redis://unused", **values)
    if clock is not None:
        jwks_key_set(settings, clock=clock)
    return settings


def refused(token: str, settings: Settings) -> bool:
    try:
        verify_token(token, settings)
    except InvalidToken:
        return True
    return False


# --- verification ----------------------------------------------------------------------------


def test_rs256_and_es256_tokens_verify_by_kid_from_one_fetch(
    jwks: JwksServer, clock: Clock
) -> None:
    rsa_a, ec_b = rsa_key("rsa-a"), ec_key("ec-b")
    jwks.publish(rsa_a, ec_b)
    settings = jwks_settings(jwks.url, clock)

    assert verify_token(rsa_a.sign(_claims(sub="7", business_id="b1")), settings).user_id == "7"
    identity = verify_token(ec_b.sign(_claims(sub="8", name="Ada")), settings)
    assert (identity.user_id, identity.name) == ("8", "Ada")
    assert jwks.requests == 1


@pytest.mark.anyio
async def test_the_async_entry_point_verifies_the_same_tokens(
    jwks: JwksServer, clock: Clock
) -> None:
    rsa_a, ec_b = rsa_key("rsa-a"), ec_key("ec-b")
    jwks.publish(rsa_a, ec_b)
    settings = jwks_settings(jwks.url, clock)

    assert (await verify_token_async(rsa_a.sign(), settings)).user_id == "42"
    assert (await verify_token_async(ec_b.sign(), settings)).user_id == "42"
    with pytest.raises(InvalidToken):
        await verify_token_async(rsa_key("unknown").sign(), settings)
    assert jwks.requests == 1  # the unknown kid came within the refetch interval


def test_an_unknown_kid_fetches_the_set_again_once(jwks: JwksServer, clock: Clock) -> None:
    old, new = rsa_key("old"), ec_key("new")
    jwks.publish(old)
    settings = jwks_settings(jwks.url, clock)
    verify_token(old.sign(), settings)
    assert jwks.requests == 1

    jwks.publish(old, new)
    clock.advance(MIN_REFETCH)
    assert verify_token(new.sign(), settings).user_id == "42"
    assert jwks.requests == 2
    for _ in range(5):
        verify_token(new.sign(), settings)
        verify_token(old.sign(), settings)
    assert jwks.requests == 2


def test_a_flood_of_garbage_kids_fetches_at_most_once_per_interval(
    jwks: JwksServer, clock: Clock
) -> None:
    real = rsa_key("real")
    jwks.publish(real)
    settings = jwks_settings(jwks.url, clock)
    verify_token(real.sign(), settings)
    clock.advance(MIN_REFETCH)
    garbage = [rsa_key(f"garbage-{n}").sign() for n in range(50)]

    def flood() -> None:
        for _ in range(4):
            for token in garbage:
                assert refused(token, settings)

    threads = [threading.Thread(target=flood) for _ in range(8)]  # 1,600 tokens, 8 at a time
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert jwks.requests == 2  # the first unknown kid refetched; everything after waited

    clock.advance(MIN_REFETCH / 2)
    assert all(refused(token, settings) for token in garbage)
    assert jwks.requests == 2
    clock.advance(MIN_REFETCH / 2)
    assert all(refused(token, settings) for token in garbage)
    assert jwks.requests == 3  # the next interval: one more fetch, not fifty
    assert verify_token(real.sign(), settings).user_id == "42"


@pytest.mark.anyio
async def test_concurrent_async_verifications_share_one_fetch(
    jwks: JwksServer, clock: Clock
) -> None:
    real = rsa_key("real")
    jwks.publish(real)
    settings = jwks_settings(jwks.url, clock)
    tokens = [real.sign() for _ in range(20)] + [rsa_key(f"g-{n}").sign() for n in range(200)]

    results = await asyncio.gather(
        *(verify_token_async(token, settings) for token in tokens), return_exceptions=True
    )

    assert all(not isinstance(result, BaseException) for result in results[:20])
    assert all(isinstance(result, InvalidToken) for result in results[20:])
    assert jwks.requests == 1


def test_rotation_takes_effect_without_a_restart(jwks: JwksServer, clock: Clock) -> None:
    old, new = rsa_key("2026-01", 0), rsa_key("2026-02", 1)
    jwks.publish(old)
    settings = jwks_settings(jwks.url, clock)
    verify_token(old.sign(), settings)

    jwks.publish(new)  # the provider rotates: the new key added, the old one removed
    clock.advance(MIN_REFETCH)
    assert verify_token(new.sign(), settings).user_id == "42"
    assert refused(old.sign(), settings)  # the refetch brought a set without it
    assert jwks.requests == 2


def test_a_removed_key_stops_verifying_once_the_set_reaches_its_maximum_age(
    jwks: JwksServer, clock: Clock
) -> None:
    old, new = rsa_key("old", 0), rsa_key("new", 1)
    jwks.publish(old)
    settings = jwks_settings(jwks.url, clock)
    verify_token(old.sign(), settings)

    jwks.publish(new)
    clock.advance(MAX_AGE - 1)
    assert verify_token(old.sign(), settings).user_id == "42"  # still the cached set
    assert jwks.requests == 1
    clock.advance(1)
    assert refused(old.sign(), settings)
    assert jwks.requests == 2
    assert verify_token(new.sign(), settings).user_id == "42"
    assert jwks.requests == 2


def test_the_process_has_one_key_set_per_url(jwks: JwksServer) -> None:
    settings = jwks_settings(jwks.url)
    made: list[object] = []
    threads = [
        threading.Thread(target=lambda: made.append(jwks_key_set(settings))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(made) == 8
    assert all(key_set is made[0] for key_set in made)
    assert jwks_key_set(jwks_settings(jwks.url)) is made[0]


# --- what is refused (RFC 8725) --------------------------------------------------------------


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda k: jwt.encode(_claims(), "", "none", {"kid": k.kid}), id="alg-none"),
        pytest.param(lambda k: _forge_hs256(_claims(), k.public_pem, k.kid), id="hs256-pem"),
        pytest.param(
            lambda k: _forge_hs256(_claims(), json.dumps(k.jwk).encode(), k.kid), id="hs256-jwk"
        ),
        pytest.param(lambda k: ec_key(k.kid).sign(), id="es256-not-allowed"),
        pytest.param(lambda k: k.sign(alg="RS512"), id="rs512-not-allowed"),
        pytest.param(lambda k: k.sign(alg="PS256"), id="ps256-with-an-rsa-key"),
        pytest.param(lambda k: rsa_key(k.kid, 1).sign(), id="another-key-same-kid"),
        pytest.param(lambda k: _sign_raw({"alg": "RS256"}, _claims(), k), id="no-kid"),
        pytest.param(
            lambda k: _sign_raw({"alg": "RS256", "kid": 7}, _claims(), k), id="kid-not-a-string"
        ),
        pytest.param(
            lambda k: _sign_raw({"alg": "RS256", "kid": "x" * 300}, _claims(), k), id="kid-huge"
        ),
        pytest.param(lambda k: k.sign(_claims(aud="someone-else")), id="wrong-audience"),
        pytest.param(lambda k: k.sign(_claims(aud=None)), id="no-audience"),
        pytest.param(lambda k: k.sign(_claims(iss="https://evil.example")), id="wrong-issuer"),
        pytest.param(lambda k: k.sign(_claims(iss=None)), id="no-issuer"),
        pytest.param(lambda k: k.sign(_claims(exp=None)), id="no-exp"),
        pytest.param(lambda k: k.sign(_claims(exp=int(time.time()) - 60)), id="expired"),
        pytest.param(lambda k: k.sign(_claims(sub=None)), id="no-sub"),
        pytest.param(lambda k: "eyJhbGciOiJSUzI1NiJ9.garbage.garbage", id="garbage"),
    ],
)
def test_tokens_outside_the_allow_list_or_the_claims_are_refused(
    jwks: JwksServer, clock: Clock, forge: Callable[[SigningKey], str]
) -> None:
    key = rsa_key("rsa-a")
    jwks.publish(key, ec_key("ec-b"))
    settings = jwks_settings(jwks.url, clock, jwt_algorithms=["RS256"])
    assert verify_token(key.sign(), settings).user_id == "42"

    with pytest.raises(InvalidToken):
        verify_token(forge(key), settings)


def test_a_token_whose_alg_is_allowed_but_not_its_keys_is_refused(
    jwks: JwksServer, clock: Clock
) -> None:
    rsa_a, ec_b = rsa_key("rsa-a"), ec_key("ec-b")
    jwks.publish(rsa_a, ec_b)
    settings = jwks_settings(jwks.url, clock)
    verify_token(rsa_a.sign(), settings)
    clock.advance(MIN_REFETCH)

    confused = SigningKey("rsa-a", "ES256", ec_b.private).sign()  # ES256, naming the RSA key
    assert refused(confused, settings)
    assert jwks.requests == 1  # a known kid with another algorithm is no reason to refetch


def test_symmetric_keys_in_the_set_are_ignored(jwks: JwksServer, clock: Clock) -> None:
    secret = b"a-published-secret-is-no-secret-at-all"
    jwks.publish(
        rsa_key("rsa-a"), extra=[{"kty": "oct", "kid": "sym", "k": _b64(secret), "alg": "HS256"}]
    )
    settings = jwks_settings(jwks.url, clock, jwt_algorithms=["RS256"])
    assert verify_token(rsa_key("rsa-a").sign(), settings).user_id == "42"
    assert refused(_forge_hs256(_claims(), secret, "sym"), settings)
    assert "sym" not in jwks_key_set(settings)._snapshot.keys  # type: ignore[union-attr]


def test_an_hmac_algorithm_cannot_be_allowed_with_a_jwks() -> None:
    with pytest.raises(ValidationError, match="RS\\*/ES\\* algorithms only"):
        settings_for("redis://unused", jwt_jwks_url="https://idp.example/jwks.json")
    with pytest.raises(ValidationError, match="RS\\*/ES\\* algorithms only"):
        settings_for(
            "redis://unused",
            jwt_jwks_url="https://idp.example/jwks.json",
            jwt_algorithms=["RS256", "HS256"],
        )


def test_jwks_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_JWKS_URL", "https://idp.example/.well-known/jwks.json")
    monkeypatch.setenv("JWT_ALGORITHMS", "RS256, ES256")
    monkeypatch.setenv("JWKS_MIN_REFETCH_SECONDS", "2")
    settings = Settings()
    assert settings.accepted_algorithms == ("RS256", "ES256")
    assert settings.jwks_min_refetch_seconds == 2
    # A production JWKS deployment needs no JWT_SECRET (it verifies nothing) but https.
    production = {"environment": "production", "stripe_webhook_secret": "whsec_prod_x1"}
    monkeypatch.delenv("JWT_SECRET", raising=False)
    assert Settings(**production).jwt_jwks_url is not None  # type: ignore[arg-type]
    monkeypatch.setenv("JWT_JWKS_URL", "http://idp.example/jwks.json")
    with pytest.raises(ValidationError, match="https"):
        Settings(**production)  # type: ignore[arg-type]
    monkeypatch.delenv("JWT_JWKS_URL")
    with pytest.raises(ValidationError, match="JWT_ALGORITHMS applies to JWT_JWKS_URL"):
        Settings()


# --- the provider unreachable ----------------------------------------------------------------


def test_when_the_jwks_is_unreachable_cached_keys_work_and_new_ones_fail_closed(
    jwks: JwksServer, clock: Clock
) -> None:
    known = rsa_key("known")
    jwks.publish(known)
    settings = jwks_settings(jwks.url, clock)
    verify_token(known.sign(), settings)
    jwks.stop()

    clock.advance(MIN_REFETCH)
    started = time.monotonic()
    assert refused(ec_key("new").sign(), settings)  # a fetch is tried, and fails
    assert verify_token(known.sign(), settings).user_id == "42"
    # Past the maximum age the refresh fails too, and the last set held keeps serving.
    clock.advance(MAX_AGE)
    assert verify_token(known.sign(), settings).user_id == "42"
    assert refused(ec_key("new").sign(), settings)
    assert time.monotonic() - started < 2.0


def test_a_jwks_that_never_answers_is_given_up_on_within_the_timeout(clock: Clock) -> None:
    """A provider that accepts the connection and then says nothing: no hang."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens, never accepts
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/jwks.json"
        settings = jwks_settings(url, clock, jwks_timeout_seconds=0.5)
        started = time.monotonic()
        assert refused(rsa_key("any").sign(), settings)
        assert time.monotonic() - started < 2.0
        started = time.monotonic()
        assert refused(rsa_key("other").sign(), settings)  # within the interval: no new wait
        assert time.monotonic() - started < 0.1


@pytest.mark.anyio
async def test_waiting_for_a_silent_jwks_does_not_block_the_event_loop(clock: Clock) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/jwks.json"
        settings = jwks_settings(url, clock, jwks_timeout_seconds=0.5)
        gaps: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.monotonic()
            while not done.is_set():
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticking = asyncio.create_task(ticker())
        with pytest.raises(InvalidToken):
            await verify_token_async(rsa_key("any").sign(), settings)
        done.set()
        await ticking
        assert len(gaps) > 10  # the loop kept running through the ~0.5 s wait
        assert max(gaps) < 0.25


# --- end to end: the edge and the job API ----------------------------------------------------


def jwks_env(url: str) -> dict[str, str]:
    return {
        "JWT_JWKS_URL": url,
        "JWT_ALGORITHMS": "RS256,ES256",
        "JWKS_TIMEOUT_SECONDS": "1",
        "JWKS_MIN_REFETCH_SECONDS": "0",
    }


@pytest.mark.anyio
async def test_the_edge_accepts_jwks_tokens_and_fails_closed_when_the_provider_is_down(
    jwks: JwksServer, edge_factory: Callable[..., Edge]
) -> None:
    known = rsa_key("edge-known")
    jwks.publish(known)
    edge = edge_factory(**jwks_env(jwks.url))
    user = unique("u")
    first = known.sign(_claims(sub=user))
    session = await Client.connect(edge.ws_url, first)

    jwks.stop()
    again = await Client.connect(edge.ws_url, known.sign(_claims(sub=user)))  # cached key
    stranger = await Client.connect(
        edge.ws_url, rsa_key("edge-new", 1).sign(_claims(sub=user)), wait_ready=False
    )
    assert await stranger.closed_with() == CloseCode.UNAUTHORIZED

    UIManager.for_user(user).show_toast("Still here", "the provider is down", "info")
    for client in (session, again):
        [event] = await client.events(1)
        assert event["title"] == "Still here"
        await client.close()
    assert jwks.requests == 1
    assert first not in edge.log_text()


@pytest.fixture
def api_process(
    jwks: JwksServer, redis_server: LocalRedis, artifacts: Path
) -> Iterator[ServerProcess]:
    with fresh_database("sqlite", artifacts) as database_url:
        port = free_port()
        env = base_env(redis_server.url, DATABASE_URL=database_url, **jwks_env(jwks.url))
        api = ServerProcess("api.main:app", port, env, artifacts / f"api-jwks-{port}.log")
        try:
            yield api
        finally:
            api.stop()


def test_the_job_api_authenticates_jwks_tokens(
    jwks: JwksServer, api_process: ServerProcess
) -> None:
    key = ec_key("api-key")
    jwks.publish(key)
    api = api_process.start()
    token = key.sign(_claims(sub=unique("u")))

    def orders(bearer: str) -> httpx.Response:
        return httpx.get(
            f"{api.http_url}/api/v1/orders", headers={"Authorization": f"Bearer {bearer}"}
        )

    ok = orders(token)
    assert ok.status_code == 200, ok.text
    assert ok.json() == []
    jwks.stop()
    assert orders(token).status_code == 200  # cached
    unknown = orders(rsa_key("api-unknown").sign())
    assert unknown.status_code == 401
    assert unknown.headers["WWW-Authenticate"].startswith("Bearer")
    assert jwks.requests == 1
    assert token not in api.log_text()
