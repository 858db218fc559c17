"""Attacks on the publish lane (api/publish_lane.py) from where a stranger or a proxy stands.

The lane sits outside every middleware of the job API and does their work itself for the
requests it serves. Each test here sends one request, as raw ASGI, to the app with the lane
and to the same app without it (`JobAPI.publish_lane = None`), and holds the lane to its
promise: the same status, headers (the date and a fresh request id aside), body (an event id
aside) and metrics; a refusal is always the route's. What is attacked: a proxy's root path,
other methods to the publish path, header names in capitals, odd and hostile Content-Length
values, latin-1 bytes in the headers the lane reads, request ids at the validator's edges,
the 503 (its headers and its log line), many publishes at once, defects while publishing,
and the scopes that are not HTTP (lifespan, WebSocket).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from starlette.types import Message

import api.publish_lane
from api.main import create_app
from api.publish_schemas import PUBLISH_MAX_BODY_BYTES
from api.routes.publish import MAX_IDEMPOTENCY_KEY
from core import json_logs
from core.config import Settings
from realtime.publisher import AsyncUIManager
from tests.harness import WAIT, unique
from tests.jobs import test_publish_lane as lane_tests
from tests.jobs.asgi_calls import PUBLISH, Chunks, Headers, Reply, send_to
from tests.jobs.test_publish_api import SERVER_KEY
from tests.jobs.test_publish_lane import EVENT_ID, RAW_AUTH, toast

pytestmark = pytest.mark.anyio

# The lane tests' fixtures: the apps with and without the lane, their keys, the lane's calls.
apps = lane_tests.apps
keys = lane_tests.keys
lane_calls = lane_tests.lane_calls

FRESH_ID = re.compile(r"[0-9a-f]{32}")


def assert_alike(lane: Reply, route: Reply) -> None:
    context = (lane, route)
    assert lane.status == route.status, context
    assert lane.headers == route.headers, context
    assert lane.counted == route.counted, context
    if lane.status == 200 and lane.body.startswith(b'{"id":'):  # a publish: its own id
        assert EVENT_ID.match(lane.body.decode()), context
        assert EVENT_ID.match(route.body.decode()), context
    else:
        assert lane.body == route.body, context


def with_length(headers: Headers, body: bytes) -> Headers:
    return [*headers, (b"content-length", b"%d" % len(body))]


# --- a proxy's prefix ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("root_path", "path", "served"),
    [
        ("/proxy", f"/proxy{PUBLISH}", True),  # uvicorn --root-path, the path with it
        ("/proxy", PUBLISH, True),  # a server that leaves the path without the prefix
        ("/proxy/", f"/proxy/{PUBLISH}", True),
        ("/ap", PUBLISH, False),  # a prefix that is only the path's first letters
        ("/proxy", f"/proxy{PUBLISH}/", False),
    ],
)
async def test_a_publish_behind_a_proxy_prefix_is_served_by_the_lane_as_the_route_answers_it(
    apps: tuple[FastAPI, FastAPI],
    lane_calls: list[int],
    root_path: str,
    path: str,
    served: bool,
) -> None:
    headers = with_length(RAW_AUTH, toast())
    lane, route = [
        await send_to(app, headers, [toast()], path=path, root_path=root_path) for app in apps
    ]
    assert_alike(lane, route)
    assert lane_calls == ([1] if served else [])
    if served:
        assert lane.status == 200
        assert lane.counted == {f"POST {PUBLISH} 200": 1}


# --- other methods to the publish path ------------------------------------------------------

PREFLIGHT: Headers = [
    (b"origin", b"https://app.example"),
    (b"access-control-request-method", b"POST"),
    (b"access-control-request-headers", b"authorization, content-type"),
]


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("GET", []),
        ("HEAD", []),
        ("PUT", []),
        ("DELETE", []),
        ("post", []),  # a method the server did not upper-case
        ("OPTIONS", PREFLIGHT),  # a browser's CORS preflight
        ("OPTIONS", []),
    ],
)
async def test_another_method_to_the_publish_path_gets_the_apps_answer_and_publishes_nothing(
    apps: tuple[FastAPI, FastAPI], lane_calls: list[int], method: str, extra: Headers
) -> None:
    headers = [*with_length(RAW_AUTH, toast()), *extra]
    lane, route = [await send_to(app, headers, [toast()], method=method) for app in apps]
    assert_alike(lane, route)
    assert route.status != 200 or method == "OPTIONS"
    assert lane_calls == []


# --- what only raw ASGI, or a lenient server, can send -------------------------------------

BODY = toast()
AUTH = (b"authorization", f"Bearer {SERVER_KEY}".encode())
JSON_TYPE = (b"content-type", b"application/json")
LENGTH = (b"content-length", b"%d" % len(BODY))
EDGES: dict[str, tuple[Headers, Chunks, bool]] = {
    # (headers, body chunks, whether the lane serves it)
    "header names in capitals": (
        [
            (b"Authorization", AUTH[1]),
            (b"Content-Type", JSON_TYPE[1]),
            (b"Content-Length", LENGTH[1]),
        ],
        [BODY],
        False,
    ),
    "the key's header name in capitals only": (
        [(b"Authorization", AUTH[1]), JSON_TYPE, LENGTH],
        [BODY],
        False,
    ),
    "the length's header name in capitals": (
        [AUTH, JSON_TYPE, (b"Content-Length", LENGTH[1])],
        [BODY],
        False,
    ),
    "an Origin in capitals (unseen by CORS too)": (
        [AUTH, JSON_TYPE, LENGTH, (b"Origin", b"https://app.example")],
        [BODY],
        True,
    ),
    "a second key in capitals": (
        [AUTH, JSON_TYPE, LENGTH, (b"Authorization", b"Bearer " + b"x" * 40)],
        [BODY],
        True,
    ),
    "a length with leading zeros": (
        [AUTH, JSON_TYPE, (b"content-length", b"000" + LENGTH[1])],
        [BODY],
        True,
    ),
    "a length of the limit, in zeros first": (
        [AUTH, JSON_TYPE, (b"content-length", b"0" * 30 + b"%d" % PUBLISH_MAX_BODY_BYTES)],
        [BODY],
        True,
    ),
    "a length one over the limit": (
        [AUTH, JSON_TYPE, (b"content-length", b"%d" % (PUBLISH_MAX_BODY_BYTES + 1))],
        [BODY],
        False,
    ),
    "a length of twenty nines": ([AUTH, JSON_TYPE, (b"content-length", b"9" * 20)], [BODY], False),
    "a length with a plus": (
        [AUTH, JSON_TYPE, (b"content-length", b"+" + LENGTH[1])],
        [BODY],
        False,
    ),
    "a length in Arabic-Indic digits": (
        [AUTH, JSON_TYPE, (b"content-length", "٣٠".encode())],
        [BODY],
        False,
    ),
    "a length in superscript (latin-1)": (
        [AUTH, JSON_TYPE, (b"content-length", b"\xb2")],
        [BODY],
        False,
    ),
    "a length with an underscore": ([AUTH, JSON_TYPE, (b"content-length", b"1_0")], [BODY], False),
    "a body longer than declared, within the limit": (
        [AUTH, JSON_TYPE, LENGTH],
        [BODY + b" " * 50],
        True,
    ),
    "a body shorter than declared": (
        [AUTH, JSON_TYPE, (b"content-length", b"%d" % (len(BODY) + 50))],
        [BODY],
        True,
    ),
    "a declared length of 0 and a body": (
        [AUTH, JSON_TYPE, (b"content-length", b"0")],
        [BODY],
        True,
    ),
    "a declared length of 0 and no body": (
        [AUTH, JSON_TYPE, (b"content-length", b"0")],
        [b""],
        False,
    ),
    "a body a byte at a time": (
        [AUTH, JSON_TYPE, LENGTH],
        [BODY[n : n + 1] for n in range(len(BODY))],
        True,
    ),
    "an empty last chunk": ([AUTH, JSON_TYPE, LENGTH], [BODY, b""], True),
    "a client that leaves after the whole body": (
        [AUTH, JSON_TYPE, LENGTH],
        [BODY[:5], BODY[5:], None],
        False,
    ),
    "Expect: 100-continue": ([AUTH, JSON_TYPE, LENGTH, (b"expect", b"100-continue")], [BODY], True),
    "Transfer-Encoding in capitals": (
        [AUTH, JSON_TYPE, LENGTH, (b"Transfer-Encoding", b"chunked")],
        [BODY],
        True,
    ),
    "the key, then a latin-1 no-break space": (
        [(b"authorization", AUTH[1] + b"\xa0"), JSON_TYPE, LENGTH],
        [BODY],
        True,
    ),
    "a latin-1 letter in the key": (
        [(b"authorization", AUTH[1][:-1] + b"\xe9"), JSON_TYPE, LENGTH],
        [BODY],
        False,
    ),
    "a latin-1 scheme": (
        [(b"authorization", b"B\xe9arer " + SERVER_KEY.encode()), JSON_TYPE, LENGTH],
        [BODY],
        False,
    ),
    "a no-break space for the scheme's": (
        [(b"authorization", b"Bearer\xa0" + SERVER_KEY.encode()), JSON_TYPE, LENGTH],
        [BODY],
        False,
    ),
    "a latin-1 content type parameter": (
        [AUTH, (b"content-type", b"application/json; charset=\xe9"), LENGTH],
        [BODY],
        True,
    ),
    "an empty idempotency key": (
        [AUTH, JSON_TYPE, LENGTH, (b"idempotency-key", b"")],
        [BODY],
        False,
    ),
    "a latin-1 idempotency key": (
        [AUTH, JSON_TYPE, LENGTH, (b"idempotency-key", b"k\xff")],
        [BODY],
        False,
    ),
    "a tab in the idempotency key": (
        [AUTH, JSON_TYPE, LENGTH, (b"idempotency-key", b"a\tb")],
        [BODY],
        False,
    ),
    "an idempotency key of the longest length": (
        [AUTH, JSON_TYPE, LENGTH, (b"idempotency-key", b"<unique>")],
        [BODY],
        True,
    ),
    "an idempotency key ending in a carriage return": (
        [AUTH, JSON_TYPE, LENGTH, (b"idempotency-key", b"k\r")],
        [BODY],
        False,
    ),
    "a request id given twice": (
        [AUTH, JSON_TYPE, LENGTH, (b"x-request-id", b"a"), (b"x-request-id", b"b")],
        [BODY],
        False,
    ),
}


@pytest.mark.parametrize("case", EDGES, ids=list(EDGES))
async def test_a_request_at_the_lanes_edges_is_answered_and_counted_as_the_route_does(
    apps: tuple[FastAPI, FastAPI], lane_calls: list[int], case: str
) -> None:
    headers, chunks, served = EDGES[case]
    longest = unique("k").ljust(MAX_IDEMPOTENCY_KEY, "k").encode()
    headers = [(name, longest if value == b"<unique>" else value) for name, value in headers]
    lane, route = [await send_to(app, headers, chunks) for app in apps]
    assert_alike(lane, route)
    assert route.raised is None
    assert lane_calls == ([1] if served else [])
    if served:
        assert lane.status == 200


@pytest.mark.parametrize("length", [b"0" * 5000 + b"%d" % len(BODY), b"9" * 5000])
async def test_a_content_length_of_thousands_of_digits_is_a_refusal_not_a_crash(
    apps: tuple[FastAPI, FastAPI], lane_calls: list[int], length: bytes
) -> None:
    """Python's int() refuses a string of more than 4300 digits (ValueError), and a server
    with httptools passes such a header on (leading zeros never overflow its count). Hostile
    input is never a 500 (docs/security.md): a 413 for the nines, and the zeros' length is
    the body's own (served, or refused by the route, but answered)."""
    headers: Headers = [AUTH, JSON_TYPE, (b"content-length", length)]
    lane, route = [await send_to(app, headers, [BODY]) for app in apps]
    assert (lane.raised, route.raised) == (None, None)
    assert_alike(lane, route)
    assert route.status in (200, 413)


# --- the request id ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (b"r" * 100, True),
        (b"a.b_c:d-9", True),
        (b"r" * 101, False),
        (b"job-7\n", False),
        (b"job-7\r", False),
        (b"caf\xe9", False),
        (b"", False),
        (b" job-7", False),
    ],
)
async def test_the_lane_answers_the_request_id_the_route_would(
    apps: tuple[FastAPI, FastAPI], lane_calls: list[int], given: bytes, kept: bool
) -> None:
    headers = [*with_length(RAW_AUTH, BODY), (b"x-request-id", given)]
    lane, route = [await send_to(app, headers, [BODY]) for app in apps]
    assert_alike(lane, route)
    assert lane_calls == [1]
    assert lane.request_id is not None
    assert route.request_id is not None
    if kept:
        assert lane.request_id == route.request_id == given
    else:
        assert FRESH_ID.fullmatch(lane.request_id.decode())
        assert FRESH_ID.fullmatch(route.request_id.decode())
        assert lane.request_id != route.request_id


# --- Redis failing, defects, and the log lines of a publish -------------------------------


class Lines(logging.Handler):
    """The records logged while it is attached, stamped as the app's handler stamps them."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(json_logs.CorrelationFields())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


async def test_a_503_from_the_lane_carries_the_request_id_vary_and_a_log_line_of_its_request(
    apps: tuple[FastAPI, FastAPI],
    lane_calls: list[int],
    lines: Lines,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def redis_gone(*_: object) -> str:
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(AsyncUIManager, "publish", redis_gone)
    headers = [*with_length(RAW_AUTH, BODY), (b"x-request-id", b"req-503")]
    lane, route = [await send_to(app, headers, [BODY]) for app in apps]
    assert_alike(lane, route)
    assert lane_calls == [1]
    assert lane.status == 503
    assert (lane.request_id, route.request_id) == (b"req-503", b"req-503")
    assert (b"vary", b"Origin") in lane.headers
    assert lane.counted == {f"POST {PUBLISH} 503": 1}
    warnings = [r for r in lines.records if r.getMessage().startswith("publish: Redis")]
    assert [getattr(r, "request_id", None) for r in warnings] == ["req-503", "req-503"]
    assert json_logs.request_id.get() is None  # and nothing of it is left behind


async def test_a_defect_while_publishing_is_answered_and_counted_alike_with_or_without_the_lane(
    apps: tuple[FastAPI, FastAPI], lane_calls: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a Redis failure: a bug (here a RuntimeError in the publish). Without the lane,
    Starlette's ServerErrorMiddleware answers 500 and Measure, inside it, counts nothing;
    the lane, outside both, must not count what the app without it does not."""

    async def defect(*_: object) -> str:
        raise RuntimeError("a defect")

    monkeypatch.setattr(AsyncUIManager, "publish", defect)
    headers = with_length(RAW_AUTH, BODY)
    lane, route = [await send_to(app, headers, [BODY]) for app in apps]
    assert lane_calls == [1]
    assert (lane.raised, route.raised) == ("RuntimeError('a defect')", "RuntimeError('a defect')")
    assert lane.counted == route.counted


async def test_many_lane_publishes_at_once_each_answer_and_log_with_their_own_request_id(
    apps: tuple[FastAPI, FastAPI],
    lane_calls: list[int],
    lines: Lines,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = AsyncUIManager.publish
    logger = logging.getLogger("tests.lane")

    async def logged(self: AsyncUIManager, event: Any, *args: Any) -> str:
        logger.warning("before %s", event.description)
        event_id = await real(self, event, *args)
        logger.warning("after %s %s", event.description, event_id)
        return event_id

    monkeypatch.setattr(AsyncUIManager, "publish", logged)
    user = unique("u")

    async def one(n: int) -> Reply:
        body = toast(user).replace(b'"D"', b'"d%d"' % n)
        headers = [*with_length(RAW_AUTH, body), (b"x-request-id", b"req-%d" % n)]
        return await send_to(apps[0], headers, [body])

    async with asyncio.timeout(WAIT):
        replies = await asyncio.gather(*(one(n) for n in range(40)))
    assert len(lane_calls) == 40
    assert [r.status for r in replies] == [200] * 40
    assert [r.request_id for r in replies] == [b"req-%d" % n for n in range(40)]
    assert len({r.body for r in replies}) == 40
    mine = [r for r in lines.records if r.name == "tests.lane"]
    assert len(mine) == 80
    for record in mine:
        description = record.getMessage().split()[1]
        assert getattr(record, "request_id", None) == f"req-{description[1:]}", record
    for n, reply in enumerate(replies):
        assert any(r.getMessage() == f"after d{n} {reply.body[7:-2].decode()}" for r in mine), reply


# --- what is not HTTP -------------------------------------------------------------------


async def test_a_websocket_to_the_publish_path_passes_by_the_lane(
    apps: tuple[FastAPI, FastAPI], lane_calls: list[int]
) -> None:
    answers = []
    for app in apps:
        sent: list[Message] = []
        inbox: list[Message] = [{"type": "websocket.connect"}]

        async def receive(inbox: list[Message] = inbox) -> Message:
            return inbox.pop(0) if inbox else {"type": "websocket.disconnect", "code": 1000}

        async def send(message: Message, sent: list[Message] = sent) -> None:
            sent.append(message)

        scope = {
            "type": "websocket", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "scheme": "ws", "server": ("api", 80), "client": ("127.0.0.1", 5000),
            "path": PUBLISH, "raw_path": PUBLISH.encode(), "root_path": "",
            "query_string": b"", "headers": RAW_AUTH, "subprotocols": [],
        }  # fmt: skip
        async with asyncio.timeout(WAIT):
            await app(scope, receive, send)
        answers.append(sent)
    assert answers[0] == answers[1]
    assert answers[0]
    assert answers[0][0]["type"] == "websocket.close"
    assert lane_calls == []


async def test_the_apps_lifespan_runs_through_the_lane(keys: Settings) -> None:
    app = create_app()
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    sent: list[Message] = []

    async def receive() -> Message:
        return await inbox.get()

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "lifespan.startup.complete":
            await inbox.put({"type": "lifespan.shutdown"})

    await inbox.put({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    async with asyncio.timeout(WAIT):
        await app(scope, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert isinstance(app.middleware_stack, api.publish_lane.PublishLane)
