"""Fuzzing the edge's SSE route as its socket is fuzzed (tests/test_ws_fuzz.py): random
queries and headers against one real edge process, each request on its own connection.

The contract (docs/sse.md): every request gets, within a bounded wait, either a stream (only
with a real token, and then always when nothing else in it is wrong) or a 4xx: a JSON body
naming what was wrong from the route, or the HTTP protocol's 408/414/431 for a head over its
limits; never a 500 or a hang; and after the run the edge answers /healthz, its log has no
"Exception in ASGI application", and it holds no more connections or descriptors than before.

Fuzzed: the credentials (a real Bearer JWT, a garbage one of any encoding and size, another
scheme, a garbage `ticket`, a JWT in the query), `since` and `Last-Event-ID` (any bytes but CR
and LF, any size), `channel` and `client`, and padding in the query, in one header or in many.
Derandomized and bounded, as the WebSocket's fuzz.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.http11 import MAX_NUM_HEADERS

from core.config import Settings
from edge.protocols.http import MAX_HEAD_BYTES
from tests.harness import Edge, token_for
from tests.test_ws_fuzz import ENCODINGS, SIZES, fuzzed, no_leaks, padding

pytestmark = pytest.mark.fuzz

EXAMPLES = 1500
ANSWER_WAIT = 5.0  # per request; a correct edge answers each in milliseconds
PATH = b"/api/v1/insight/sse"
PROTOCOL_REFUSALS = {408, 414, 431}  # a head the HTTP protocol refuses before the app sees it
__all__ = ["no_leaks"]  # the fixture, used by name


@dataclass(frozen=True)
class Request:
    raw: bytes
    real_token: bool
    clean: bool  # nothing in it but the real token could make the route refuse it


@dataclass
class Answer:
    status: int | None = None
    json_body: object = None
    unparsable: bool = False  # uvicorn's parser refused the head (a byte no head may hold)
    streamed: bool = False  # the stream went live (insight_ready arrived)


@st.composite
def requests(draw: st.DrawFn, real_token: str) -> Request:
    def garbage() -> bytes:
        encoding = draw(st.sampled_from(sorted(ENCODINGS)))
        return padding(draw(ENCODINGS[encoding]), draw(SIZES))

    credentials = draw(
        st.sampled_from(["real", "garbage bearer", "basic", "ticket", "query", "none"])
    )
    query: list[bytes] = []
    headers: list[bytes] = [b"Host: 127.0.0.1", b"Connection: close"]
    if credentials == "real":
        headers.append(b"Authorization: Bearer " + real_token.encode())
    elif credentials == "garbage bearer":
        headers.append(b"Authorization: Bearer " + garbage())
    elif credentials == "basic":
        headers.append(b"Authorization: Basic " + garbage())
    elif credentials == "ticket":
        query.append(b"ticket=" + garbage())
    elif credentials == "query":
        query.append(b"token=" + real_token.encode())
    fuzzed_fields = 0
    for name in (b"since", b"channel", b"client"):
        if draw(st.booleans()):
            query.append(name + b"=" + garbage())
            fuzzed_fields += 1
    if draw(st.booleans()):
        headers.append(b"Last-Event-ID: " + garbage())
        fuzzed_fields += 1
    where = draw(st.sampled_from(["query", "one header", "many headers", "nowhere"]))
    piece, size = draw(ENCODINGS["ascii"]), draw(SIZES)
    if where == "query":
        query.append(b"pad=" + padding(piece, size))
    elif where == "one header":
        headers.append(b"X-Fuzz: " + padding(piece, size))
    elif where == "many headers":
        count = draw(st.integers(1, MAX_NUM_HEADERS + 10))
        headers += [b"X-Fuzz-%d: " % n + padding(piece, size // count) for n in range(count)]
    target = PATH + (b"?" + b"&".join(query) if query else b"")
    raw = b"GET " + target + b" HTTP/1.1\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"
    clean = credentials == "real" and fuzzed_fields == 0 and len(raw) <= MAX_HEAD_BYTES // 2
    return Request(raw, credentials == "real", clean)


async def exchange(port: int, request: bytes) -> Answer:
    """Send `request` on a new connection; the status, the JSON body of a refusal, or whether
    a stream went live (then closed by us)."""
    answer = Answer()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async with asyncio.timeout(ANSWER_WAIT):
            with contextlib.suppress(ConnectionError):
                writer.write(request)
                await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            answer.status = int(head.split(b" ", 2)[1])
            if answer.status == 200:
                seen = b""
                while b"insight_ready" not in seen:
                    chunk = await reader.read(4096)
                    assert chunk, "the stream ended before insight_ready"
                    seen += chunk
                answer.streamed = True
                return answer
            body = b""
            # To the end: the edge closes after a refusal (resetting, if the client's head is
            # still coming in: it was refused unread).
            with contextlib.suppress(ConnectionError):
                body = await reader.read()
            if b"application/json" in head.lower():
                answer.json_body = json.loads(body)  # JSONResponse: a Content-Length body
            answer.unparsable = answer.status == 400 and b"text/plain" in head.lower()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return answer


@pytest.mark.usefixtures("no_leaks")
def test_every_request_gets_a_stream_or_a_4xx_never_a_500_or_a_hang(
    edge: Edge, settings: Settings
) -> None:
    real_token = token_for(settings, "fuzzed-sse")
    outcomes: Counter[str] = Counter()

    @fuzzed(EXAMPLES)
    @given(requests(real_token))
    def one(attempt: Request) -> None:
        answer = asyncio.run(exchange(edge.port, attempt.raw))
        assert answer.status is not None, ("no answer", attempt)
        if answer.status == 200:
            assert attempt.real_token, ("a stream without a token", attempt)
            assert answer.streamed
            outcomes["stream"] += 1
            return
        assert 400 <= answer.status < 500, (answer, attempt)
        assert not attempt.clean, ("a clean request was refused", answer, attempt)
        if answer.unparsable:  # only a head with a byte no head may hold, or a broken line
            request_line = attempt.raw.split(b"\r\n", 1)[0]
            assert request_line.count(b" ") > 2 or any(  # a space in the target splits it
                b < 0x20 or b > 0x7E for b in attempt.raw.replace(b"\r\n", b"")
            ), attempt
        elif answer.status not in PROTOCOL_REFUSALS:
            assert isinstance(answer.json_body, dict), (answer, attempt)
            assert answer.json_body["detail"], (answer, attempt)
        outcomes[f"http {answer.status}"] += 1

    one()
    # The generator reaches every outcome, so a narrowed strategy cannot pass unnoticed.
    assert {"stream", "http 400", "http 401", "http 403", "http 414", "http 431"} <= set(outcomes)
