"""The HTTP publish API (POST /api/v1/publish, /publish/batch) against real processes: the job
API (with PUBLISH_API_KEYS), the shared edge and the session's private Redis. Every event is
read at a real WebSocket; every refusal is a JSON 4xx (503 for Redis down), never a 500.

Non-delivery is proved without waiting: after the call under test, a marker event is
published to the same socket's addressee, and the socket's next UI event must be the marker
(one Redis orders what it is given, and the edge forwards in that order).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from pydantic import ValidationError

from api.publish_schemas import PUBLISH_BATCH_MAX_BODY_BYTES, PUBLISH_MAX_BODY_BYTES
from cli.local_redis import LocalRedis, free_port
from core.config import DEV_PUBLISH_API_KEY, Settings
from realtime.options import MAX_VERSION
from realtime.recipients import Recipient
from tests.figures import FIGURES
from tests.harness import (
    ROOT,
    WAIT,
    Client,
    Edge,
    ServerProcess,
    base_env,
    id_of,
    unique,
    without_id,
)
from tests.jobs.test_openapi_fuzz import base_config, run_schemathesis
from tests.stack import fresh_database

pytestmark = pytest.mark.anyio

SERVER_KEY = "test-publish-key-0123456789abcdef-0001"
ROTATED_KEY = "test-publish-key-0123456789abcdef-0002"  # two keys: one can be rotated out
EXAMPLE = ROOT / "examples" / "node-publisher" / "publish.mjs"

TOAST = {"type": "ui_toast", "title": "Report ready", "description": "March", "variant": "success"}
FIVE_EVENTS: list[dict[str, Any]] = [
    TOAST,
    {"type": "ui_redirect", "target": "/orders?status=success"},
    {"type": "ui_refresh"},
    {
        "type": "ui_update",
        "data": {"type": "metrics_update", "businessId": "b1", "metrics": FIGURES},
    },
    {"type": "ui_modal", "data": {"type": "payment_failed", "payload": {"orderId": "17"}}},
]


def start_api(redis_url: str, directory: Path, database_url: str, **env: str) -> ServerProcess:
    """`uvicorn api.main:app` as the stack starts it, with server keys configured."""
    port = free_port()
    values = base_env(
        redis_url, DATABASE_URL=database_url, PUBLISH_API_KEYS=f"{SERVER_KEY},{ROTATED_KEY}", **env
    )
    ready = "/readyz" if "EVENTS_REDIS_URL" not in env else "/healthz"
    return ServerProcess(
        "api.main:app", port, values, directory / f"api-publish-{port}.log", ready_path=ready
    ).start()


@pytest.fixture(scope="module")
def database(artifacts: Path) -> Iterator[str]:
    # Publishing touches no table; the API only needs a database to be ready.
    with fresh_database("sqlite", artifacts) as url:
        yield url


@pytest.fixture(scope="module")
def api(redis_server: LocalRedis, database: str, artifacts: Path) -> Iterator[ServerProcess]:
    process = start_api(redis_server.url, artifacts, database)
    yield process
    process.stop()


@pytest.fixture
async def http(api: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{api.http_url}/api/v1", timeout=10) as client:
        yield client


async def post(
    http: httpx.AsyncClient, path: str, body: Any, key: str | None = SERVER_KEY, **headers: str
) -> httpx.Response:
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return await http.post(path, json=body, headers=headers)


async def publish(
    http: httpx.AsyncClient, to: dict[str, Any], event: dict[str, Any], **options: Any
) -> str:
    response = await post(http, "/publish", {"to": to, "event": event, **options})
    assert response.status_code == 200, response.text
    event_id: str = response.json()["id"]
    return event_id


async def next_event_is_marker(http: httpx.AsyncClient, client: Client, to: dict[str, Any]) -> None:
    """Nothing reached `client` before now: the marker published now is its next UI event."""
    marker = {"type": "ui_toast", "title": "marker", "description": unique("m"), "variant": "info"}
    marker_id = await publish(http, to, marker)
    [frame] = await client.events(1)
    assert without_id(frame) == marker, f"an event arrived before the marker: {frame}"
    assert id_of(frame) == marker_id


def assert_json_refusal(response: httpx.Response, status: int, *named: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = json.loads(response.content.decode("utf-8"))  # strict UTF-8: nothing leaked raw
    assert "detail" in body
    for name in named:
        assert name in response.text, f"{name!r} not named in {response.text}"


def locs(response: httpx.Response) -> list[list[str | int]]:
    return [error["loc"] for error in response.json()["detail"]]


# --- delivery ---------------------------------------------------------------------------------


async def test_each_of_the_five_events_reaches_its_user_and_nobody_else(
    http: httpx.AsyncClient, edge: Edge, token: Callable[..., str]
) -> None:
    business = unique("b")
    user, neighbour = unique("u"), unique("u")  # same business: a user event is not for it
    mine = await Client.connect(edge.ws_url, token(user, business))
    theirs = await Client.connect(edge.ws_url, token(neighbour, business))
    for event in FIVE_EVENTS:
        event_id = await publish(http, {"user": user}, event)
        [frame] = await mine.events(1)
        assert without_id(frame) == event
        assert id_of(frame) == event_id
    await next_event_is_marker(http, theirs, {"user": neighbour})
    await next_event_is_marker(http, mine, {"user": user})
    await asyncio.gather(mine.close(), theirs.close())


async def test_a_business_event_reaches_every_user_of_that_business_only(
    http: httpx.AsyncClient, edge: Edge, token: Callable[..., str]
) -> None:
    business, elsewhere = unique("b"), unique("b")
    members = [await Client.connect(edge.ws_url, token(unique("u"), business)) for _ in range(2)]
    outsider_id = unique("u")
    outsider = await Client.connect(edge.ws_url, token(outsider_id, elsewhere))
    event_id = await publish(http, {"business": business}, TOAST, ttl_seconds=30)
    for member in members:
        [frame] = await member.events(1)
        assert (without_id(frame), id_of(frame)) == (TOAST, event_id)
    await next_event_is_marker(http, outsider, {"user": outsider_id})
    await asyncio.gather(*(c.close() for c in [*members, outsider]))


async def test_an_everyone_event_reaches_every_user(
    http: httpx.AsyncClient, edge: Edge, token: Callable[..., str]
) -> None:
    clients = [
        await Client.connect(edge.ws_url, token(unique("u"), business))
        for business in (unique("b"), None)
    ]
    event_id = await publish(http, {"everyone": True}, {"type": "ui_refresh"})
    for client in clients:
        # Other tests broadcast too: this one's refresh is known by its id.
        frame = await client.until(lambda f: f["type"] == "ui_refresh" and id_of(f) == event_id)
        assert without_id(frame) == {"type": "ui_refresh"}
    await asyncio.gather(*(c.close() for c in clients))


async def test_a_batch_is_published_in_order_and_answers_the_ids_in_order(
    http: httpx.AsyncClient, edge: Edge, token: Callable[..., str]
) -> None:
    user, business = unique("u"), unique("b")
    client = await Client.connect(edge.ws_url, token(user, business))
    items = [
        {"to": {"user": user} if n % 2 else {"business": business}, "event": event}
        for n, event in enumerate(FIVE_EVENTS * 4)
    ]
    response = await post(http, "/publish/batch", {"items": items})
    assert response.status_code == 200, response.text
    ids = response.json()["ids"]
    assert len(ids) == len(set(ids)) == len(items)
    frames = await client.events(len(items))
    assert [without_id(f) for f in frames] == [item["event"] for item in items]
    assert [id_of(f) for f in frames] == ids
    await client.close()


BAD_ITEMS: dict[str, tuple[dict[str, Any], list[str | int]]] = {
    "variant": (
        {"event": {**TOAST, "variant": "purple"}},
        ["body", "items", 3, "event", "ui_toast", "variant"],
    ),
    "recipient": ({"to": {"user": "new\nline"}}, ["body", "items", 3, "to", "user"]),
    "ttl past retention": ({"ttl_seconds": 3601}, ["body", "items", 3, "ttl_seconds"]),
    "event over 64 KiB": (
        {"event": {"type": "ui_update", "data": "x" * 65_600}},
        ["body", "items", 3, "event"],
    ),
    "an id": (
        {"event": {**TOAST, "id": "u1.1-0"}},
        ["body", "items", 3, "event", "ui_toast", "id"],
    ),
}


@pytest.mark.parametrize("bad", BAD_ITEMS, ids=list(BAD_ITEMS))
async def test_one_bad_item_refuses_the_whole_batch_and_publishes_nothing(
    http: httpx.AsyncClient,
    edge: Edge,
    token: Callable[..., str],
    redis_client: redis.Redis,
    bad: str,
) -> None:
    user = unique("u")
    client = await Client.connect(edge.ws_url, token(user))
    items: list[dict[str, Any]] = [{"to": {"user": user}, "event": TOAST} for _ in range(6)]
    change, loc = BAD_ITEMS[bad]
    items[3] = {**items[3], **change}
    response = await post(http, "/publish/batch", {"items": items}, **{"Idempotency-Key": user})
    assert_json_refusal(response, 422)
    assert locs(response) == [loc]
    assert redis_client.exists(Recipient.user(user).stream_key) == 0  # the log is empty
    await next_event_is_marker(http, client, {"user": user})
    await client.close()


async def test_a_repeated_idempotency_key_returns_the_first_id_and_publishes_once(
    http: httpx.AsyncClient, edge: Edge, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(edge.ws_url, token(user))
    key = unique("report")
    body = {"to": {"user": user}, "event": TOAST}
    first, again = [await post(http, "/publish", body, **{"Idempotency-Key": key}) for _ in "12"]
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    [frame] = await client.events(1)
    assert id_of(frame) == first.json()["id"]
    await next_event_is_marker(http, client, {"user": user})

    # A batch: item n is published with the key `<key>:n`, so a retry publishes nothing twice.
    batch = {"items": [body, {"to": {"user": user}, "event": {"type": "ui_refresh"}}]}
    first, again = [
        await post(http, "/publish/batch", batch, **{"Idempotency-Key": "b-" + key}) for _ in "12"
    ]
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert [id_of(f) for f in await client.events(2)] == first.json()["ids"]
    item_1 = await post(http, "/publish", batch["items"][1], **{"Idempotency-Key": f"b-{key}:1"})
    assert item_1.json()["id"] == first.json()["ids"][1]
    await next_event_is_marker(http, client, {"user": user})
    await client.close()


async def test_a_snapshot_published_after_a_newer_version_is_answered_with_the_newer_id(
    http: httpx.AsyncClient, edge: Edge, token: Callable[..., str]
) -> None:
    """Two services report one job's progress over HTTP, the older report last: it is
    answered with the newer event's id, and reaches no socket."""
    user = unique("u")
    client = await Client.connect(edge.ws_url, token(user))

    def snapshot(percent: int) -> dict[str, Any]:
        event = {"type": "ui_update", "data": {"percent": percent}}
        return {"to": {"user": user}, "event": event, "coalesce_key": "job:7", "version": percent}

    newer = await post(http, "/publish", snapshot(60))
    older = await post(http, "/publish", snapshot(40))
    assert newer.status_code == older.status_code == 200
    assert older.json() == newer.json()
    [frame] = await client.events(1)
    assert id_of(frame) == newer.json()["id"]
    await next_event_is_marker(http, client, {"user": user})
    await client.close()


async def test_a_batch_of_a_thousand_items_fits_arrives_and_leaves_the_loop_free(
    api: ServerProcess, http: httpx.AsyncClient, edge: Edge, token: Callable[..., str]
) -> None:
    """1,000 toasts of 1 KiB each (the batch limit's design point) to 1,000 users; while they
    are published, the API goes on answering other requests (the route awaits Redis)."""
    users = [unique("u") for _ in range(1000)]
    watched = [0, 499, 999]
    clients = [await Client.connect(edge.ws_url, token(users[n])) for n in watched]
    item = {"title": "Batch", "variant": "info", "description": "x" * 900}
    items = [{"to": {"user": u}, "event": {"type": "ui_toast", **item}} for u in users]
    body = json.dumps({"items": items}).encode()
    assert len(body) < PUBLISH_BATCH_MAX_BODY_BYTES

    answered: list[tuple[float, float]] = []  # /healthz round trips: (sent, answered)
    done = asyncio.Event()

    async def probe() -> None:
        async with httpx.AsyncClient(base_url=api.http_url, timeout=10) as prober:
            while not done.is_set():
                sent = time.monotonic()
                assert (await prober.get("/healthz")).status_code == 200
                answered.append((sent, time.monotonic()))

    prober = asyncio.create_task(probe())
    started = time.monotonic()
    response = await http.post(
        "/publish/batch",
        content=body,
        headers={"Authorization": f"Bearer {SERVER_KEY}", "Content-Type": "application/json"},
        timeout=60,
    )
    elapsed = time.monotonic() - started
    done.set()
    await prober
    assert response.status_code == 200, response.text
    ids = response.json()["ids"]
    assert len(set(ids)) == 1000
    for n, client in zip(watched, clients, strict=True):
        [frame] = await client.events(1)
        assert id_of(frame) == ids[n]
    during = [a for s, a in answered if started < s and a < started + elapsed]
    print(
        f"batch of 1,000 ({len(body)} bytes): {elapsed * 1000:.0f} ms; "
        f"{len(during)} /healthz answered meanwhile"
    )
    assert len(during) >= 3, f"the API answered {len(during)} requests in {elapsed:.2f} s"
    await asyncio.gather(*(c.close() for c in clients))


# --- credentials ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/publish", "/publish/batch"])
async def test_only_a_server_key_publishes(
    http: httpx.AsyncClient, edge: Edge, token: Callable[..., str], path: str
) -> None:
    user = unique("u")
    client = await Client.connect(edge.ws_url, token(user))
    item = {"to": {"user": user}, "event": TOAST}
    body = item if path == "/publish" else {"items": [item]}

    # A user's valid token is known but never a server credential, even for a valid body.
    refused = await post(http, path, body, key=token(user))
    assert_json_refusal(refused, 403, "PUBLISH_API_KEYS")
    # ... and it is refused before the body is looked at.
    assert (await post(http, path, {"x": 1}, key=token(user))).status_code == 403
    for key, headers in [
        (None, {}),
        ("not-a-key-but-long-enough-0123456789abcdef", {}),
        (SERVER_KEY + "x", {}),
        (token(user)[:-2] + "xx", {}),  # a JWT with a bad signature is just an unknown key
        (None, {"Authorization": f"Basic {SERVER_KEY}"}),
    ]:
        unknown = await post(http, path, body, key=key, **headers)
        assert_json_refusal(unknown, 401)
        assert unknown.headers["www-authenticate"].startswith("Bearer")
    await next_event_is_marker(http, client, {"user": user})

    rotated = await post(http, path, body, key=ROTATED_KEY)
    assert rotated.status_code == 200, rotated.text
    [frame] = await client.events(1)
    assert without_id(frame) == TOAST
    await client.close()


def test_publish_keys_are_checked_when_the_settings_are_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PUBLISH_API_KEYS", raising=False)
    short = "only-31-characters-long-0123456"
    for keys, message in [
        (f"{SERVER_KEY},{short}", "at least 32 characters"),
        ("has a space in it 0123456789abcdef0123", "printable ASCII"),
        (DEV_PUBLISH_API_KEY, "development default"),
    ]:
        with pytest.raises(ValidationError, match="PUBLISH_API_KEYS") as refused:
            Settings(environment="test", publish_api_keys=keys)
        assert message in str(refused.value)
        assert short not in str(refused.value)
        assert SERVER_KEY not in str(refused.value)

    configured = Settings(environment="test", publish_api_keys=f" {SERVER_KEY} ,{ROTATED_KEY},")
    assert [k.get_secret_value() for k in configured.publish_keys] == [SERVER_KEY, ROTATED_KEY]
    assert SERVER_KEY not in repr(configured)
    assert Settings(environment="test").publish_keys == ()  # unset: the API publishes nothing
    development = Settings(environment="development")
    assert [k.get_secret_value() for k in development.publish_keys] == [DEV_PUBLISH_API_KEY]


# --- hostile input ----------------------------------------------------------------------------


def raw(to: str = '{"user":"u"}', event: str = '{"type":"ui_refresh"}', more: str = "") -> bytes:
    """A publish body exactly as written (NaN, escapes and all)."""
    return f'{{"to":{to},"event":{event}{more}}}'.encode()


def update(data: str) -> bytes:
    return raw(event=f'{{"type":"ui_update","data":{data}}}')


REFRESH_ALL = raw(to='{"everyone":true}')
HOSTILE: dict[str, tuple[str, bytes, int, str]] = {
    "NaN ttl": ("/publish", raw(more=',"ttl_seconds":NaN'), 422, "ttl_seconds"),
    "Infinity ttl": ("/publish", raw(more=',"ttl_seconds":Infinity'), 422, "ttl_seconds"),
    "1e400 ttl": ("/publish", raw(more=',"ttl_seconds":1e400'), 422, "ttl_seconds"),
    "string ttl": ("/publish", raw(more=',"ttl_seconds":"5"'), 422, "ttl_seconds"),
    "null ttl": ("/publish", raw(more=',"ttl_seconds":null'), 422, "ttl_seconds"),
    "ttl past retention": ("/publish", raw(more=',"ttl_seconds":3601'), 422, "ttl_seconds"),
    "NaN in data": ("/publish", update('{"x":[NaN]}'), 422, "data"),
    "version without a key": ("/publish", raw(more=',"version":3'), 422, "coalesce_key"),
    "negative version": ("/publish", raw(more=',"coalesce_key":"k","version":-1'), 422, "version"),
    "version past the highest": (
        "/publish",
        raw(more=f',"coalesce_key":"k","version":{MAX_VERSION + 1}'),
        422,
        "version",
    ),
    "fractional version": (
        "/publish",
        raw(more=',"coalesce_key":"k","version":1.5'),
        422,
        "version",
    ),
    "string version": ("/publish", raw(more=',"coalesce_key":"k","version":"3"'), 422, "version"),
    "batch version without a key": (
        "/publish/batch",
        b'{"items":[' + raw(more=',"version":3') + b"]}",
        422,
        "coalesce_key",
    ),
    "huge int in data": ("/publish", update("9" * 5000), 400, "detail"),
    "deep nesting": ("/publish", update("[" * 50_000 + "]" * 50_000), 400, "detail"),
    "empty user": ("/publish", raw(to='{"user":""}'), 422, "user"),
    "long user": ("/publish", raw(to=f'{{"user":"{"u" * 257}"}}'), 422, "user"),
    "C1 control in business": ("/publish", raw(to='{"business":"a\\u0085b"}'), 422, "business"),
    "newline after user": ("/publish", raw(to='{"user":"u\\n"}'), 422, "user"),
    "unit separator in user": ("/publish", raw(to='{"user":"a\\u001fb"}'), 422, "user"),
    "lone surrogate user": ("/publish", raw(to='{"user":"\\ud800"}'), 422, "user"),
    "null user": ("/publish", raw(to='{"user":null}'), 422, "user"),
    "two addressees": ("/publish", raw(to='{"user":"u","business":"b"}'), 422, "exactly one"),
    "no addressee": ("/publish", raw(to="{}"), 422, "exactly one"),
    "everyone false": ("/publish", raw(to='{"everyone":false}'), 422, "everyone"),
    "everyone 1": ("/publish", raw(to='{"everyone":1}'), 422, "everyone"),
    "unknown type": ("/publish", raw(event='{"type":"ui_explode"}'), 422, "event"),
    "not JSON": ("/publish", b'{"to":', 422, "body"),
    "not UTF-8": ("/publish", raw(to='{"user":"u"}').replace(b'"u"', b'"\xff"'), 400, "detail"),
    "empty batch": ("/publish/batch", b'{"items":[]}', 422, "items"),
    "1,001 items": (
        "/publish/batch",
        b'{"items":[' + b",".join([REFRESH_ALL] * 1001) + b"]}",
        422,
        "items",
    ),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
async def test_hostile_bodies_get_a_json_4xx_naming_the_field_or_limit(
    http: httpx.AsyncClient, case: str
) -> None:
    path, body, status, named = HOSTILE[case]
    response = await http.post(
        path,
        content=body,
        headers={"Authorization": f"Bearer {SERVER_KEY}", "Content-Type": "application/json"},
    )
    assert_json_refusal(response, status, named)


LIMITS = {"/publish": PUBLISH_MAX_BODY_BYTES, "/publish/batch": PUBLISH_BATCH_MAX_BODY_BYTES}


@pytest.mark.parametrize("path", LIMITS)
@pytest.mark.parametrize("over", [0, 1], ids=["at-the-limit", "one-byte-over"])
async def test_a_body_of_exactly_the_limit_is_published_and_one_byte_more_is_413(
    api: ServerProcess, path: str, over: int
) -> None:
    """The limit is the largest body taken: streamed in chunks (no Content-Length to judge
    by), a body of exactly that many bytes (valid JSON padded with spaces) is published, one
    byte more is refused."""
    item = {"to": {"user": unique("u")}, "event": TOAST}
    document = json.dumps(item if path == "/publish" else {"items": [item]}).encode()
    body = document + b" " * (LIMITS[path] + over - len(document))

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    async with httpx.AsyncClient(base_url=f"{api.http_url}/api/v1", timeout=WAIT) as http:
        response = await http.post(
            path,
            content=chunks(),
            headers={"Authorization": f"Bearer {SERVER_KEY}", "Content-Type": "application/json"},
        )
    assert response.status_code == (413 if over else 200), response.text


@pytest.mark.parametrize("path", LIMITS)
async def test_a_body_declared_over_the_limit_gets_a_json_413_at_once(
    api: ServerProcess, path: str
) -> None:
    """Answered from Content-Length, before a byte of the body is read. (The request is
    written by hand and sends no body: a client still sending megabytes when the server
    closes may see the connection reset rather than the 413, whatever the server does.)"""
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    head = (
        f"POST /api/v1{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {SERVER_KEY}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {LIMITS[path] + 1}\r\n\r\n"
    )
    writer.write(head.encode())
    await writer.drain()
    async with asyncio.timeout(WAIT):
        status_line, *header_lines = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in header_lines if line)
        body = await reader.readexactly(int(headers["content-length"]))
    writer.close()
    assert status_line.split()[1] == "413"
    assert headers["content-type"] == "application/json"
    assert str(LIMITS[path]) in json.loads(body)["detail"]


@pytest.mark.parametrize("path", LIMITS)
async def test_a_streamed_body_over_the_limit_gets_the_same_json_413(
    http: httpx.AsyncClient, path: str
) -> None:
    """Chunked, no Content-Length: refused as soon as what arrived passes the limit."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"pad":"'
        for _ in range(LIMITS[path] // 8192 + 1):
            yield b"x" * 8192

    response = await http.post(
        path, content=chunks(), headers={"Authorization": f"Bearer {SERVER_KEY}"}
    )
    assert_json_refusal(response, 413, str(LIMITS[path]))


@pytest.mark.parametrize("key", ["has space", "x" * 191, "caf\u00e9"])
async def test_a_bad_idempotency_key_is_a_422_naming_the_header(
    http: httpx.AsyncClient, key: str
) -> None:
    body = {"to": {"user": unique("u")}, "event": TOAST}
    headers = [
        (b"Authorization", f"Bearer {SERVER_KEY}".encode()),
        (b"Idempotency-Key", key.encode()),
    ]
    response = await http.post("/publish", json=body, headers=headers)
    assert_json_refusal(response, 422, "Idempotency-Key")


async def test_redis_not_answering_is_a_503_with_retry_after(
    redis_server: LocalRedis, database: str, artifacts: Path
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    api = start_api(redis_server.url, artifacts, database, EVENTS_REDIS_URL=dead)
    try:
        async with httpx.AsyncClient(base_url=f"{api.http_url}/api/v1", timeout=20) as http:
            item = {"to": {"user": "u"}, "event": TOAST}
            for path, body in [("/publish", item), ("/publish/batch", {"items": [item, item]})]:
                response = await post(http, path, body)
                assert_json_refusal(response, 503, "Idempotency-Key")
                assert int(response.headers["retry-after"]) >= 1
        assert "Redis did not answer" in api.log_text()
    finally:
        api.stop()


# --- the Node.js example ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    version = (
        subprocess.run([found, "--version"], capture_output=True, text=True, check=False).stdout
        if found
        else ""
    )
    major = re.match(r"v(\d+)\.", version)
    if found is None or major is None or int(major.group(1)) < 18:
        if os.environ.get("INSIGHT_REQUIRE_NODE"):
            pytest.fail(f"no Node.js 18+ (found {found} {version.strip()}): INSIGHT_REQUIRE_NODE")
        pytest.skip("the Node.js example needs node 18 or newer (global fetch)")
    return found


async def run_as_a_user_would(
    argv: list[str], api: ServerProcess, key: str = SERVER_KEY, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`argv` in a child process, pointed at the API as the examples' README says."""
    return await asyncio.to_thread(
        subprocess.run,
        argv,
        env={**os.environ, "INSIGHT_API_URL": api.http_url, "INSIGHT_PUBLISH_KEY": key},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def test_the_node_example_publishes_a_toast_that_reaches_the_user(
    api: ServerProcess, edge: Edge, token: Callable[..., str], node: str
) -> None:
    user = unique("node")
    client = await Client.connect(edge.ws_url, token(user))
    run = await run_as_a_user_would(
        [node, str(EXAMPLE), user, "From Node.js", "Published over HTTP", "success"], api
    )
    assert run.returncode == 0, run.stderr
    event_id = run.stdout.strip()
    [frame] = await client.events(1)
    assert id_of(frame) == event_id
    assert without_id(frame) == {
        "type": "ui_toast",
        "title": "From Node.js",
        "description": "Published over HTTP",
        "variant": "success",
    }

    refused = await run_as_a_user_would([node, str(EXAMPLE), user], api, key="x" * 40)
    assert refused.returncode == 1
    assert "HTTP 401" in refused.stderr
    await client.close()


async def test_the_documented_curl_line_publishes_a_toast(
    api: ServerProcess, edge: Edge, token: Callable[..., str]
) -> None:
    """The curl call of examples/node-publisher/README.md, run as written."""
    curl, bash = shutil.which("curl"), shutil.which("bash")
    if curl is None or bash is None:
        pytest.skip("needs curl and bash")
    readme = (EXAMPLE.parent / "README.md").read_text()
    [command] = [b for b in re.findall(r"```bash\n(.*?)```", readme, re.S) if "curl" in b]
    client = await Client.connect(edge.ws_url, token("42"))
    run = await run_as_a_user_would([bash, "-c", command], api, timeout=30)
    assert run.returncode == 0, run.stderr
    event_id = json.loads(run.stdout)["id"]
    frame = await client.until(lambda f: f["type"] == "ui_toast" and id_of(f) == event_id)
    assert frame["title"] == "Report ready"
    await client.close()


# --- the OpenAPI document ---------------------------------------------------------------------


def test_the_openapi_document_has_examples_and_every_refusal(api: ServerProcess) -> None:
    document = httpx.get(f"{api.http_url}/openapi.json").json()
    for path in ("/api/v1/publish", "/api/v1/publish/batch"):
        operation = document["paths"][path]["post"]
        assert operation["security"] == [{"ServerKey": []}]
        assert operation["requestBody"]["content"]["application/json"]["examples"]
        assert "example" in operation["responses"]["200"]["content"]["application/json"]
        assert {"200", "400", "401", "403", "413", "422", "503"} <= set(operation["responses"])
        assert "Retry-After" in operation["responses"]["503"]["headers"]


@pytest.mark.fuzz
def test_schemathesis_with_a_server_key_finds_every_answer_documented(
    api: ServerProcess, tmp_path: Path
) -> None:
    """tests/jobs/test_openapi_fuzz.py runs every operation with a user's JWT (the publish
    routes answer 403); this runs them with a server key, so the cases reach the handlers,
    with the same seed, examples and checks."""
    report, (selected, _, tested) = run_schemathesis(
        tmp_path,
        base_config(SERVER_KEY),
        "--include-path-regex",
        "^/api/v1/publish",
        f"{api.http_url}/openapi.json",
    )
    assert selected == tested == "2", report
