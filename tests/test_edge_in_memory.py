"""The edge's app over the in-memory broker, in this process: the endpoint, the hub and the
connection injected with a broker that is no Redis, driven through Starlette's test client.

What this shows is the seam: the edge serves a socket with any broker it is given. The
guarantees are the real-process suites' (a real `insight edge`, a real Redis).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette's test client asks for `httpx2`, and works with the httpx the project has.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from core.config import Settings, get_settings
from edge.app import Edge, create_app
from edge.close_codes import CloseCode
from realtime import PublishOptions, Recipient
from realtime.broker import Broker
from realtime.broker.memory import MemoryBroker
from realtime.settings import events_settings
from tests.harness import TEST_AUDIENCE, TEST_ISSUER, TEST_JWT_SECRET

ENVIRONMENT = {
    "ENVIRONMENT": "test",
    "JWT_SECRET": TEST_JWT_SECRET,
    "JWT_AUDIENCE": TEST_AUDIENCE,
    "JWT_ISSUER": TEST_ISSUER,
    "STRIPE_WEBHOOK_SECRET": "whsec_test_0123456789abcdef",
    "DEMO_ENABLED": "false",
}


@pytest.fixture
def memory_edge(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, MemoryBroker]]:
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    events_settings.cache_clear()
    broker = MemoryBroker()

    async def connect(settings: Settings) -> Broker:
        return broker

    with TestClient(Edge(create_app(connect))) as client:
        yield client, broker
    get_settings.cache_clear()
    events_settings.cache_clear()


def token(user: str, **claims: Any) -> str:
    now = int(time.time())
    body = {"sub": user, "iat": now, "exp": now + 600, "aud": TEST_AUDIENCE, "iss": TEST_ISSUER}
    return jwt.encode({**body, **claims}, TEST_JWT_SECRET, algorithm="HS256")


def publish(client: TestClient, broker: MemoryBroker, user: str, body: dict[str, Any]) -> str:
    """Publish as a producer would, on the app's event loop (the broker lives there)."""
    encoded = json.dumps(body, separators=(",", ":"))
    assert client.portal is not None
    event_id: str = client.portal.call(
        broker.log.append, Recipient.user(user), encoded, 60.0, PublishOptions()
    )
    return event_id


def test_a_socket_gets_its_users_events_over_an_in_memory_broker(
    memory_edge: tuple[TestClient, MemoryBroker],
) -> None:
    client, broker = memory_edge
    with client.websocket_connect(f"/api/v1/insight?token={token('42')}") as socket:
        ready = socket.receive_json()
        assert ready["type"] == "insight_ready"
        assert broker.presence.connections("42") == 1  # admitted, and counted
        publish(client, broker, "someone-else", {"type": "ui_refresh"})
        toast = {"type": "ui_toast", "title": "Hi", "description": "", "variant": "info"}
        event_id = publish(client, broker, "42", toast)
        frame = socket.receive_json()
        assert frame["type"] == "ui_toast"
        assert frame["id"].startswith(event_id)


def test_a_resume_over_an_in_memory_broker_replays_what_was_missed(
    memory_edge: tuple[TestClient, MemoryBroker],
) -> None:
    client, broker = memory_edge
    with client.websocket_connect(f"/api/v1/insight?token={token('7')}") as socket:
        cursor = socket.receive_json()["id"]
    missed = [
        publish(client, broker, "7", {"type": "ui_update", "data": {"n": n}}) for n in range(3)
    ]
    with client.websocket_connect(f"/api/v1/insight?token={token('7')}&since={cursor}") as back:
        frames = [back.receive_json() for _ in range(4)]
    assert [f["id"].partition("_")[0] for f in frames[:3]] == missed
    assert frames[3]["type"] == "insight_ready"


def test_a_bad_token_over_an_in_memory_broker_is_closed_4401(
    memory_edge: tuple[TestClient, MemoryBroker],
) -> None:
    client, _ = memory_edge
    with client.websocket_connect("/api/v1/insight?token=not-a-token") as socket:
        message = socket.receive()
    assert message["type"] == "websocket.close"
    assert message["code"] == CloseCode.UNAUTHORIZED
