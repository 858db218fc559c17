"""Fuzzing the edge's socket (issue 12): random first frames and random handshakes against
one real edge process, each on its own connection.

The contract (docs/security.md, "Hostile input never hangs, crashes or leaks"): every socket ends
with a close code of docs/security.md (4400 or 4401, or 1009 for a frame over
WS_MAX_MESSAGE_BYTES) or, for a refused handshake, an HTTP 4xx and a closed connection; and
after the run the edge answers /healthz, its log has no "Exception in ASGI application", and
it holds no more sockets than before.

- First frames: JSON of every shape (deep nesting, closed or not; huge strings; escaped lone
  surrogates; wrong types for `type` and `token`), text that is not JSON, bytes that are not
  UTF-8 (as binary frames and as text frames), at random sizes up to twice the limit, whole or
  in fragments.
- Handshakes: a real or a garbage token, in the query or in Sec-WebSocket-Protocol, with
  padding of random size (around websockets' 8 KiB line limit and the edge's 64 KiB head
  limit) and encoding (ASCII, Latin-1, UTF-8, any byte but CR and LF) in the query, in one
  header or in many. One that is well formed must still go live.

Hypothesis runs derandomized (a fixed seed), without its example database and with a bounded
number of examples, so the verdict does not depend on the machine or on earlier runs, and
the run time stays bounded: 2,500 first frames and 2,000 handshakes take about 15 s here.
A live socket (a real token, in the handshake fuzz) is closed by the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as fuzz_settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.http11 import MAX_LINE_LENGTH, MAX_NUM_HEADERS

from core.config import Settings
from edge.close_codes import CloseCode
from edge.protocols.http import MAX_HEAD_BYTES
from tests.harness import WAIT, Edge, eventually, token_for
from tests.test_hostile_ws import (
    PATH,
    EdgeLog,
    assert_healthy,
    client_text_frame,
    exchange,
    handshake,
)

pytestmark = pytest.mark.fuzz

FIRST_FRAME_EXAMPLES = 2500
HANDSHAKE_EXAMPLES = 2000
ANSWER_WAIT = 5.0  # per socket; a correct edge answers each in milliseconds


def fuzzed(examples: int) -> Callable[..., Callable[..., None]]:
    return fuzz_settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


# -- first frames ---------------------------------------------------------------------------

SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
CHARACTERS = st.characters() | SURROGATES
JWT_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."


def repeated(pieces: st.SearchStrategy[str], most: int) -> st.SearchStrategy[str]:
    """A short random piece repeated to a random length of up to `most` characters: large
    sizes without large draws (Hypothesis bounds the data behind one example)."""
    return st.tuples(pieces, st.integers(0, most)).map(
        lambda t: (t[0] * (t[1] // len(t[0]) + 1))[: t[1]]
    )


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(CHARACTERS, max_size=20)
    | repeated(st.text(CHARACTERS, min_size=1, max_size=4), 9000)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(CHARACTERS, max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def deeply_nested(draw: st.DrawFn) -> str:
    depth = draw(st.integers(1, 6000))
    opener, closer = draw(
        st.sampled_from([("[", "]"), ('{"a":', "}"), ('{"type":"auth","token":[', "]}")])
    )
    inner = draw(st.sampled_from(["", "1", '"x"', "[]", "{}"]))
    return opener * depth + inner + (closer * depth if draw(st.booleans()) else "")


TOKENS = (
    JSON_VALUES
    | st.text(JWT_ALPHABET, min_size=1, max_size=300)
    | repeated(st.text(JWT_ALPHABET, min_size=1, max_size=3), 9000)
    | st.text(CHARACTERS, max_size=40)
)
AUTH_MESSAGES = st.fixed_dictionaries(
    {"type": st.just("auth") | JSON_VALUES}, optional={"token": TOKENS, "extra": JSON_VALUES}
)


@st.composite
def json_text(draw: st.DrawFn) -> str:
    value = draw(AUTH_MESSAGES | JSON_VALUES)
    if draw(st.booleans()):
        with contextlib.suppress(UnicodeEncodeError):
            text = json.dumps(value, ensure_ascii=False)
            text.encode()  # a lone surrogate cannot travel raw in a text frame
            return text
    return json.dumps(value)  # surrogates escaped: `"\ud800"` arrives as JSON


@dataclass(frozen=True)
class FirstFrame:
    payload: str | bytes
    text: bool  # sent as a text frame (bytes too: they need not be UTF-8)
    fragments: int

    @property
    def size(self) -> int:
        return len(self.payload.encode() if isinstance(self.payload, str) else self.payload)


NOT_UTF8 = st.tuples(st.binary(min_size=1, max_size=16), st.integers(1, 600)).map(
    lambda t: (b"\xff" + t[0]) * t[1]
)
JWT_LIKE_AUTH = st.text(JWT_ALPHABET, min_size=1, max_size=400).map(
    lambda token: json.dumps({"type": "auth", "token": token})
)
PAYLOADS: st.SearchStrategy[tuple[str | bytes, bool]] = (
    json_text().map(lambda text: (text, True))
    | JWT_LIKE_AUTH.map(lambda text: (text, True))
    | deeply_nested().map(lambda text: (text, True))
    | repeated(st.text(st.characters(exclude_categories=["Cs"]), min_size=1), 9000).map(
        lambda text: (text, True)
    )
    | st.tuples(NOT_UTF8, st.booleans())
    | st.binary(max_size=64).map(lambda data: (data, False))
)


@st.composite
def first_frames(draw: st.DrawFn) -> FirstFrame:
    payload, text = draw(PAYLOADS)
    return FirstFrame(payload, text, draw(st.integers(1, 3)))


async def send_first_frame(url: str, frame: FirstFrame) -> int | None:
    """Connect without a token, send `frame` as the first message (in `frame.fragments`
    frames) and return the code of the server's close frame (None: the connection ended
    without one, or not within ANSWER_WAIT)."""
    message = frame.payload
    step = max(1, len(message) // frame.fragments)
    parts = [message[i : i + step] for i in range(0, len(message), step)]
    async with connect(url, max_size=None, ping_interval=None, open_timeout=WAIT) as ws:
        with contextlib.suppress(ConnectionClosed):
            if len(parts) > 1:
                await ws.send(iter(parts), text=frame.text)
            else:
                await ws.send(message, text=frame.text)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ws.wait_closed(), ANSWER_WAIT)
    received = ws.protocol.close_rcvd
    return None if received is None else int(received.code)


def open_fds(edge: Edge) -> int:
    assert edge.process is not None
    return len(os.listdir(f"/proc/{edge.process.pid}/fd"))


@pytest.fixture
def no_leaks(edge: Edge) -> Iterator[None]:
    """After the test: the edge is healthy and crash-free, and holds no more connections
    and (where /proc exists) file descriptors than before it."""
    log = EdgeLog(edge)
    connections = edge.connection_count()
    fds = open_fds(edge) if Path("/proc/self/fd").exists() else None
    yield
    assert_healthy(edge, log)
    asyncio.run(eventually(lambda: edge.connection_count() <= connections))
    if fds is not None:
        # a little slack for the edge's own Redis connections and the probes above
        asyncio.run(eventually(lambda: open_fds(edge) <= fds + 4))


@pytest.mark.usefixtures("no_leaks")
def test_every_first_frame_ends_in_a_design_close_code(edge: Edge, settings: Settings) -> None:
    limit = settings.ws_max_message_bytes
    codes: Counter[int | None] = Counter()

    @fuzzed(FIRST_FRAME_EXAMPLES)
    @given(first_frames())
    def one(frame: FirstFrame) -> None:
        code = asyncio.run(send_first_frame(edge.ws_url, frame))
        codes[code] += 1
        if frame.size > limit:
            assert code == CloseCode.MESSAGE_TOO_BIG, (code, frame)
        else:
            assert code in (CloseCode.MALFORMED, CloseCode.UNAUTHORIZED), (code, frame)

    one()
    # The generator reaches every outcome, so a narrowed strategy cannot pass unnoticed.
    assert {CloseCode.MALFORMED, CloseCode.UNAUTHORIZED, CloseCode.MESSAGE_TOO_BIG} <= set(codes)


# -- handshakes -----------------------------------------------------------------------------

QUERY_SAFE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
PRINTABLE = bytes(range(0x21, 0x7F))
ENCODINGS: dict[str, st.SearchStrategy[bytes]] = {
    "ascii": st.binary(min_size=1, max_size=8).map(
        lambda data: bytes(QUERY_SAFE[b % len(QUERY_SAFE)] for b in data)
    ),
    "printable": st.binary(min_size=1, max_size=8).map(
        lambda data: bytes(PRINTABLE[b % len(PRINTABLE)] for b in data)
    ),
    "latin-1": st.binary(min_size=1, max_size=8).map(lambda data: bytes(b | 0x80 for b in data)),
    "utf-8": st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=4).map(
        str.encode
    ),
    "any byte": st.binary(min_size=1, max_size=8).map(
        lambda data: data.replace(b"\r", b"").replace(b"\n", b"") or b"\x00"
    ),
}
# Around websockets' 8 KiB line limit and the edge's 64 KiB head limit, and anywhere between.
SIZES = st.sampled_from(
    [0, 1, MAX_LINE_LENGTH - 100, MAX_LINE_LENGTH - 30, MAX_LINE_LENGTH, 10_000, 70_000]
) | st.integers(0, 20_000)


def padding(piece: bytes, size: int) -> bytes:
    return (piece * (size // len(piece) + 1))[:size]


@dataclass(frozen=True)
class Handshake:
    request: bytes
    real_token: bool
    well_formed: bool  # every line and the whole head within the limits, only safe bytes


@st.composite
def handshakes(draw: st.DrawFn, real_token: str) -> Handshake:
    real = draw(st.booleans())
    if real:
        token, token_safe = real_token.encode(), True
    else:
        encoding = draw(st.sampled_from(sorted(ENCODINGS)))
        token = padding(draw(ENCODINGS[encoding]), draw(SIZES))
        token_safe = encoding == "ascii"
    in_query = draw(st.booleans())
    where = draw(st.sampled_from(["query", "one header", "many headers", "nowhere"]))
    encoding = draw(st.sampled_from(sorted(ENCODINGS)))
    piece = draw(ENCODINGS[encoding])
    size = draw(SIZES)
    safe_padding = (
        where == "nowhere"
        or encoding == "ascii"
        or (encoding == "printable" and where != "query")  # `&` or `#` would cut the query
    )

    target = PATH + (b"?token=" + token if in_query else b"")
    headers: list[bytes] = []
    if not in_query:
        headers.append(b"Sec-WebSocket-Protocol: insight, insight.bearer." + token)
    if where == "query":
        target += (b"&" if in_query else b"?") + b"pad=" + padding(piece, size)
    elif where == "one header":
        headers.append(b"X-Fuzz: " + padding(piece, size))
    elif where == "many headers":
        count = draw(st.integers(1, MAX_NUM_HEADERS + 10))
        headers += [b"X-Fuzz-%d: " % n + padding(piece, size // count) for n in range(count)]
    request = handshake(target, *headers)
    lines = request.split(b"\r\n")
    well_formed = (
        token_safe
        and safe_padding
        and max(len(line) + 2 for line in lines) <= MAX_LINE_LENGTH
        and len(lines) - 3 <= MAX_NUM_HEADERS  # minus the request line and the blank end
        and len(request) <= MAX_HEAD_BYTES
    )
    return Handshake(request, real, well_formed)


@pytest.mark.usefixtures("no_leaks")
def test_every_handshake_is_refused_with_a_4xx_or_ends_in_a_design_close_code(
    edge: Edge, settings: Settings
) -> None:
    real_token = token_for(settings, "fuzzed-handshake")
    # Sent once the upgrade is accepted: a first frame that is not an auth message, so a
    # connection left without a token is closed 4400 at once, not after WS_AUTH_TIMEOUT.
    hello = client_text_frame(b'{"type":"hello"}')
    outcomes: Counter[str] = Counter()

    @fuzzed(HANDSHAKE_EXAMPLES)
    @given(handshakes(real_token))
    def one(attempt: Handshake) -> None:
        answer = asyncio.run(exchange(edge.port, attempt.request, ANSWER_WAIT, after_upgrade=hello))
        assert answer.status is not None, ("no answer", attempt)
        if answer.status == 101:
            assert answer.ready or answer.close_code in (
                CloseCode.MALFORMED,
                CloseCode.UNAUTHORIZED,
            ), (answer, attempt)
            assert attempt.real_token or not answer.ready, ("live without a token", attempt)
            outcomes["live" if answer.ready else f"closed {answer.close_code}"] += 1
        else:
            assert 400 <= answer.status < 500, (answer, attempt)
            assert answer.closed, ("refused but left open", attempt)
            outcomes[f"http {answer.status}"] += 1
        if attempt.well_formed and attempt.real_token:
            assert answer.ready, ("a well-formed handshake was refused", answer, attempt)

    one()
    assert {"live", "closed 4400", "closed 4401", "http 400", "http 414", "http 431"} <= set(
        outcomes
    ), outcomes
