"""POST /api/v1/publish's lane (api/publish_lane.py) answers exactly as the route it shortcuts.

Two job APIs in this process, the same app but for the lane (one has it, one has it taken out:
`JobAPI.publish_lane = None`), against the session's Redis: every request below is sent to
both, and the answers must be the same, status, headers and body (an event id aside: each
publish makes its own, except under one Idempotency-Key, where both must answer the same id).
The lane must serve what a producer sends when the route accepts it, and nothing the route
refuses, so that a refusal is always the route's own; what it leaves to the route (an Origin,
a body of no declared length, a header it reads given twice) is answered alike.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from redis.exceptions import RedisClusterException
from starlette.types import Message

import api.publish_lane
from api.main import create_app
from api.publish_schemas import PUBLISH_MAX_BODY_BYTES
from api.refusals import DRAIN_BYTES
from api.routes.publish import publish_items
from cli.local_redis import LocalRedis
from core.config import Settings, get_settings
from core.security import issue_token
from realtime.publisher import AsyncUIManager
from tests.harness import WAIT, unique
from tests.jobs.asgi_calls import Reply, send_to
from tests.jobs.test_publish_api import HOSTILE, ROTATED_KEY, SERVER_KEY, raw

pytestmark = pytest.mark.anyio

Lane = Callable[..., Awaitable[list[str]]]
EVENT_ID = re.compile(r'^\{"id":"u[0-9]+\.[0-9]+-[0-9]+"\}$')
SAME_EVERY_TIME = {"date", "x-request-id"}  # headers whose values differ per answer


def toast(user: str = "u1", **options: Any) -> bytes:
    more = "".join(f',"{name}":{value}' for name, value in options.items())
    return raw(
        to=f'{{"user":"{user}"}}',
        event='{"type":"ui_toast","title":"T","description":"D","variant":"info"}',
        more=more,
    )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


JSON = {"Content-Type": "application/json"}
SERVED: dict[str, tuple[dict[str, str], bytes]] = {
    "a toast": ({**bearer(SERVER_KEY), **JSON}, toast()),
    "the rotated key": ({**bearer(ROTATED_KEY), **JSON}, toast()),
    "a +json type": ({**bearer(SERVER_KEY), "Content-Type": "application/x+json"}, toast()),
    "a byte order mark": ({**bearer(SERVER_KEY), **JSON}, b"\xef\xbb\xbf" + toast()),
    "UTF-16": ({**bearer(SERVER_KEY), **JSON}, toast().decode().encode("utf-16-le")),
    "a charset": (
        {**bearer(SERVER_KEY), "Content-Type": "Application/JSON; charset=utf-8"},
        toast(),
    ),
    "lowercase scheme": ({"Authorization": f"bearer {SERVER_KEY}", **JSON}, toast()),
    "a coalesced version": (
        {**bearer(SERVER_KEY), **JSON},
        toast(coalesce_key='"k"', version=7, ttl_seconds=30),
    ),
    "an id from an identity provider": ({**bearer(SERVER_KEY), **JSON}, toast("urn:user:42")),
}
REFUSED: dict[str, tuple[dict[str, str], bytes]] = {
    "no key": (JSON, toast()),
    "an unknown key": ({**bearer("x" * 40), **JSON}, toast()),
    "basic auth": ({"Authorization": f"Basic {SERVER_KEY}", **JSON}, toast()),
    "an empty bearer": ({"Authorization": "Bearer ", **JSON}, toast()),
    "text/plain": ({**bearer(SERVER_KEY), "Content-Type": "text/plain"}, toast()),
    "no content type": (bearer(SERVER_KEY), toast()),
    "a JSON subtype of text": ({**bearer(SERVER_KEY), "Content-Type": "text/json"}, toast()),
    "an empty body": ({**bearer(SERVER_KEY), **JSON}, b""),
    "an array": ({**bearer(SERVER_KEY), **JSON}, b"[" + toast() + b"]"),
    "an extra member": ({**bearer(SERVER_KEY), **JSON}, toast(extra=1)),
    "a space in the idempotency key": (
        {**bearer(SERVER_KEY), **JSON, "Idempotency-Key": "a b"},
        toast(),
    ),
    "an idempotency key of 191": (
        {**bearer(SERVER_KEY), **JSON, "Idempotency-Key": "k" * 191},
        toast(),
    ),
    "a body over the limit, declared": (
        {**bearer(SERVER_KEY), **JSON},
        toast(coalesce_key=f'"{"k" * PUBLISH_MAX_BODY_BYTES}"'),
    ),
    **{
        f"hostile: {name}": ({**bearer(SERVER_KEY), **JSON}, body)
        for name, (path, body, _, _) in HOSTILE.items()
        if path == "/publish"
    },
}


# Served by the route, not the lane, and answered 200: the lane leaves them to the layers
# that add to the answer (CORS) or to the route's own reading of them.
ROUTED: dict[str, tuple[dict[str, str], bytes]] = {
    "a browser's, with an Origin": (
        {**bearer(SERVER_KEY), **JSON, "Origin": "https://app.example"},
        toast(),
    ),
}


@pytest.fixture
def lane_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many publishes the lane made (the route publishes through its own import)."""
    calls: list[int] = []
    real: Lane = publish_items

    async def counted(*args: Any) -> list[str]:
        calls.append(1)
        return await real(*args)

    monkeypatch.setattr(api.publish_lane, "publish_items", counted)
    return calls


@pytest.fixture
def keys(redis_server: LocalRedis, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("PUBLISH_API_KEYS", f"{SERVER_KEY},{ROTATED_KEY}")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
async def apps(keys: Settings) -> AsyncIterator[tuple[FastAPI, FastAPI]]:
    """(with the lane, without it): the same app, each with its lifespan run."""
    with_lane, without = create_app(), create_app()
    without.publish_lane = None
    async with (
        with_lane.router.lifespan_context(with_lane),
        without.router.lifespan_context(without),
    ):
        yield with_lane, without


@pytest.fixture
async def apis(
    apps: tuple[FastAPI, FastAPI],
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with client_of(apps[0]) as lane, client_of(apps[1]) as route:
        yield lane, route


def client_of(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


async def both(
    apis: tuple[httpx.AsyncClient, httpx.AsyncClient], headers: dict[str, str], body: bytes
) -> tuple[httpx.Response, httpx.Response]:
    lane, route = apis
    answers = [
        await client.post("/api/v1/publish", content=body, headers=headers)
        for client in (lane, route)
    ]
    return answers[0], answers[1]


def assert_alike(lane: httpx.Response, route: httpx.Response) -> None:
    assert lane.status_code == route.status_code, (lane.text, route.text)
    for name in {*lane.headers.keys(), *route.headers.keys()} - SAME_EVERY_TIME:
        assert lane.headers.get(name) == route.headers.get(name), name
    assert lane.headers.get("x-request-id")
    assert route.headers.get("x-request-id")


@pytest.mark.parametrize("case", SERVED, ids=list(SERVED))
async def test_a_publish_the_route_accepts_is_served_by_the_lane_with_the_routes_answer(
    apis: tuple[httpx.AsyncClient, httpx.AsyncClient], lane_calls: list[int], case: str
) -> None:
    headers, body = SERVED[case]
    lane, route = await both(apis, headers, body)
    assert lane.status_code == 200, lane.text
    assert_alike(lane, route)
    assert EVENT_ID.match(lane.text)
    assert EVENT_ID.match(route.text)
    assert lane.json()["id"] != route.json()["id"]
    assert lane_calls == [1]


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
async def test_a_request_the_route_refuses_gets_the_routes_own_refusal(
    apis: tuple[httpx.AsyncClient, httpx.AsyncClient], lane_calls: list[int], case: str
) -> None:
    headers, body = REFUSED[case]
    lane, route = await both(apis, headers, body)
    assert 400 <= lane.status_code < 500, lane.text
    assert_alike(lane, route)
    assert lane.content == route.content
    assert lane_calls == []


@pytest.mark.parametrize("case", ROUTED, ids=list(ROUTED))
async def test_a_publish_the_lane_leaves_to_the_route_is_answered_alike(
    apis: tuple[httpx.AsyncClient, httpx.AsyncClient], lane_calls: list[int], case: str
) -> None:
    headers, body = ROUTED[case]
    lane, route = await both(apis, headers, body)
    assert lane.status_code == 200, lane.text
    assert_alike(lane, route)
    assert lane.headers["access-control-allow-origin"] == "*"
    assert lane_calls == []


async def test_the_lane_answers_the_callers_request_id_or_a_new_one(
    apis: tuple[httpx.AsyncClient, httpx.AsyncClient], lane_calls: list[int]
) -> None:
    lane, _ = apis
    headers = {**bearer(SERVER_KEY), **JSON}
    given = await lane.post(
        "/api/v1/publish", content=toast(), headers={**headers, "X-Request-ID": "job-7:a"}
    )
    insane = await lane.post(
        "/api/v1/publish", content=toast(), headers={**headers, "X-Request-ID": "a b"}
    )
    fresh = [await lane.post("/api/v1/publish", content=toast(), headers=headers) for _ in range(2)]
    assert [a.status_code for a in (given, insane, *fresh)] == [200] * 4
    assert lane_calls == [1] * 4
    assert given.headers["x-request-id"] == "job-7:a"
    ids = {insane.headers["x-request-id"], *(a.headers["x-request-id"] for a in fresh)}
    assert len(ids) == 3
    assert all(re.fullmatch("[0-9a-f]{32}", request_id) for request_id in ids)


async def test_a_users_token_is_refused_by_the_route_as_no_server_credential(
    apis: tuple[httpx.AsyncClient, httpx.AsyncClient], keys: Settings, lane_calls: list[int]
) -> None:
    token = issue_token(keys, "u1")
    lane, route = await both(apis, {**bearer(token), **JSON}, toast())
    assert lane.status_code == 403
    assert_alike(lane, route)
    assert lane.content == route.content
    assert lane_calls == []


async def test_one_idempotency_key_gives_one_id_whichever_answers(
    apis: tuple[httpx.AsyncClient, httpx.AsyncClient], lane_calls: list[int]
) -> None:
    headers = {**bearer(SERVER_KEY), **JSON, "Idempotency-Key": unique("key")}
    lane, route = await both(apis, headers, toast(unique("u")))
    assert lane.status_code == route.status_code == 200
    assert lane.content == route.content
    assert lane_calls == [1]


async def test_a_lane_publish_is_counted_under_the_routes_template(
    apis: tuple[httpx.AsyncClient, httpx.AsyncClient], lane_calls: list[int]
) -> None:
    def count(route: str) -> float:
        labels = {"method": "POST", "route": route, "status": "200"}
        return REGISTRY.get_sample_value("insight_api_requests_total", labels) or 0.0

    before = count("/api/v1/publish"), count("unmatched")
    lane, _ = apis
    answer = await lane.post(
        "/api/v1/publish", content=toast(), headers={**bearer(SERVER_KEY), **JSON}
    )
    assert answer.status_code == 200
    assert lane_calls == [1]
    assert (count("/api/v1/publish"), count("unmatched")) == (before[0] + 1, before[1])


# --- what only a raw ASGI request can send -----------------------------------------------


def answered(reply: Reply) -> tuple[object, ...]:
    """What a client sees of an app's answer, and what the app counted."""
    return reply.status, reply.headers, reply.body, reply.counted


RAW_AUTH = [
    (b"authorization", f"Bearer {SERVER_KEY}".encode()),
    (b"content-type", b"application/json"),
]
RAW: dict[str, tuple[list[tuple[bytes, bytes]], list[bytes | None]]] = {
    # `$` in a pattern also matches before a final newline: the header is still refused
    "an idempotency key ending in a newline": (
        [*RAW_AUTH, (b"idempotency-key", b"k\n")],
        [toast()],
    ),
    "a streamed body over the limit": (RAW_AUTH, [b'{"pad":"', *[b"x" * 65_536] * 4]),
    "a client that leaves mid-body": (RAW_AUTH, [b'{"to"', None]),
    "a client that leaves mid-body, of a declared length": (
        [*RAW_AUTH, (b"content-length", b"%d" % len(toast()))],
        [toast()[:9], None],
    ),
    "more body than declared": (
        [*RAW_AUTH, (b"content-length", b"2")],
        [toast()[:1], b"x" * PUBLISH_MAX_BODY_BYTES],
    ),
    "an unknown key, then the server key": (
        [
            (b"authorization", b"Bearer " + b"x" * 40),
            *RAW_AUTH,
            (b"content-length", b"%d" % len(toast())),
        ],
        [toast()],
    ),
    "chunked": ([*RAW_AUTH, (b"transfer-encoding", b"chunked")], [toast()[:9], b"{"]),
}


@pytest.mark.parametrize("case", RAW, ids=list(RAW))
async def test_a_raw_request_gets_the_routes_answer_and_is_counted_as_the_route_counts_it(
    apps: tuple[FastAPI, FastAPI], lane_calls: list[int], case: str
) -> None:
    headers, chunks = RAW[case]
    lane, route = [await send_to(app, headers, chunks) for app in apps]
    assert answered(lane) == answered(route)
    assert route.status is not None
    assert 400 <= route.status < 500
    assert list(route.counted) == [f"POST /api/v1/publish {route.status}"]
    assert lane_calls == []


async def test_a_cluster_error_while_publishing_is_a_503_either_way(
    apis: tuple[httpx.AsyncClient, httpx.AsyncClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py's RedisClusterException (no node for a slot, say) is not a RedisError: it is
    raised here in place of the publish, as a cluster client raises it mid-failover."""

    async def no_node_for_the_slot(*_: object) -> str:
        raise RedisClusterException("no node serves this slot")

    monkeypatch.setattr(AsyncUIManager, "publish", no_node_for_the_slot)
    lane, route = await both(apis, {**bearer(SERVER_KEY), **JSON}, toast())
    assert lane.status_code == 503, lane.text
    assert_alike(lane, route)
    assert lane.content == route.content
    assert int(lane.headers["retry-after"]) >= 1


async def test_a_defect_in_the_lane_is_counted_as_the_500_the_server_answers(
    apps: tuple[FastAPI, FastAPI], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside the app's middleware, the lane has no ServerErrorMiddleware around it: what it
    raises reaches the server (uvicorn answers 500 and logs it), counted here as such."""

    async def defect(*_: object) -> list[str]:
        raise RuntimeError("a defect")

    monkeypatch.setattr(api.publish_lane, "publish_items", defect)
    headers = [*RAW_AUTH, (b"content-length", b"%d" % len(toast()))]
    reply = await send_to(apps[0], headers, [toast()])
    assert reply.raised == "RuntimeError('a defect')"
    assert (reply.status, reply.counted) == (None, {"POST /api/v1/publish 500": 1})


# --- strangers' requests, at random ------------------------------------------------------

HEADER_VALUES: dict[bytes, list[bytes | None]] = {
    b"authorization": [
        f"Bearer {SERVER_KEY}".encode(), f"bearer {ROTATED_KEY}".encode(),
        f"Bearer  {SERVER_KEY}".encode(), f"Bearer {SERVER_KEY} ".encode(), b"Bearer " + b"x" * 40,
        f"Basic {SERVER_KEY}".encode(), b"Bearer", b"", None,
    ],
    b"content-type": [
        b"application/json", b"application/json; charset=utf-8", b"APPLICATION/JSON",
        b"application/problem+json", b"text/json", b"application/json, text/plain", b"", None,
    ],
    b"content-length": [
        b"<length>", b"<length>", b"+<length>", b" <length>", b"0", b"999999", None,
    ],
    b"idempotency-key": [None, None, b"<unique>", b"a b", b"k" * 191, b"\xe9t\xe9"],
    b"origin": [None, None, None, b"https://app.example", b"null"],
    b"x-request-id": [None, b"job-7:a", b"a b", b"x" * 101],
    b"transfer-encoding": [None, None, None, b"chunked"],
}  # fmt: skip
BODIES: list[bytes] = [
    toast(), toast(), toast("urn:user:42"), b"\xef\xbb\xbf" + toast(), toast(extra=1),
    toast(version=-1), b"", b"{", b"[]", b"null", b'{"to":{"user":"u"}}',
    toast().replace(b"T", b"\xff"),
    toast(coalesce_key=f'"{"k" * PUBLISH_MAX_BODY_BYTES}"'),
]  # fmt: skip


# What a producer sends: each header above keeps this value (None: not sent) most of the time.
PLAIN: dict[bytes, bytes | None] = {
    b"authorization": f"Bearer {SERVER_KEY}".encode(),
    b"content-type": b"application/json",
    b"content-length": b"<length>",
}


def stranger(rng: random.Random) -> tuple[list[tuple[bytes, bytes]], list[bytes | None]]:
    """A request's headers and body chunks: a producer's, each part of it swapped, now and
    then, for a value on one of the lane's edges, a header sometimes sent twice."""
    body = toast(unique("u")) if rng.random() < 0.5 else rng.choice(BODIES)
    headers: list[tuple[bytes, bytes]] = []
    for name, values in HEADER_VALUES.items():
        value = PLAIN.get(name) if rng.random() < 0.85 else rng.choice(values)
        if value is None:
            continue
        value = value.replace(b"<length>", b"%d" % len(body))
        value = value.replace(b"<unique>", unique("key").encode())
        headers.append((name, value))
        if rng.random() < 0.03:
            headers.append((name, rng.choice([v for v in values if v is not None])))
    rng.shuffle(headers)
    cut = rng.randrange(len(body) + 1) if body and rng.random() < 0.2 else len(body)
    chunks: list[bytes | None] = [body[:cut], body[cut:]] if cut < len(body) else [body]
    if rng.random() < 0.03:
        chunks[-1] = None  # the client leaves before its body's end
    return headers, chunks


async def test_the_lane_answers_strangers_requests_exactly_as_the_route_does(
    apps: tuple[FastAPI, FastAPI], lane_calls: list[int]
) -> None:
    """300 requests drawn at random, each to the app with the lane and to the app without:
    the same status, headers (the date and a fresh request id aside) and body (an event id
    aside, unless an idempotency key made it the same), counted alike; and the lane served
    exactly the ones the route accepted."""
    rng = random.Random(20261207)
    served = 0
    for _ in range(300):
        headers, chunks = stranger(rng)
        lane_calls.clear()
        lane, route = [await send_to(app, headers, chunks) for app in apps]
        keyed = any(name == b"idempotency-key" for name, _ in headers)
        context = (headers, chunks, lane, route)
        assert lane.status == route.status, context
        assert lane.headers == route.headers, context
        assert lane.counted == route.counted, context
        if lane.status == 200 and not keyed:
            assert EVENT_ID.match(lane.body.decode()), context
            assert EVENT_ID.match(route.body.decode()), context
        else:
            assert lane.body == route.body, context
        if lane_calls:
            assert lane.status == 200, context  # a refusal is always the route's
        elif lane.status == 200:  # left to the route: what the lane must not answer itself
            assert not lane_may_serve(headers, chunks), context
        served += len(lane_calls)
    assert 20 <= served <= 200  # both sides of the lane's edges were drawn


def lane_may_serve(headers: list[tuple[bytes, bytes]], chunks: list[bytes | None]) -> bool:
    """Whether the lane may answer an accepted request itself: one of each header it reads,
    no Origin (CORS adds to the answer), and a body of the length it declared."""
    names = [name for name, _ in headers]
    read = [name for name in names if name in HEADER_VALUES]
    body = b"".join(chunk for chunk in chunks if chunk is not None)
    return (
        len(read) == len(set(read))
        and b"origin" not in names
        and b"transfer-encoding" not in names
        and dict(headers).get(b"content-length") == b"%d" % len(body)
        and None not in chunks
    )


async def test_a_body_longer_than_declared_is_read_no_further_than_the_limit_by_the_lane(
    apps: tuple[FastAPI, FastAPI], lane_calls: list[int]
) -> None:
    """A server holds a body to its Content-Length; a raw ASGI one need not. Chunks that never
    end, under a Content-Length of 2: the lane stops reading past the publish limit and hands
    what it read to the route, whose body limit refuses it (and stops reading in its turn)."""
    read = 0

    async def endless() -> Message:
        nonlocal read
        read += 1
        await asyncio.sleep(0)  # as a server's receive does: the timeout below can fire
        return {"type": "http.request", "body": b"x" * 65_536, "more_body": True}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    path = "/api/v1/publish"
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "server": ("api", 80), "client": ("127.0.0.1", 5000), "path": path,
        "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [*RAW_AUTH, (b"content-length", b"2")],
    }  # fmt: skip
    async with asyncio.timeout(WAIT):
        await apps[0](scope, endless, send)
    assert sent[0]["status"] == 413
    assert read * 65_536 <= PUBLISH_MAX_BODY_BYTES + DRAIN_BYTES + 2 * 65_536
    assert lane_calls == []
