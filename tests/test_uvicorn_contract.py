"""The installed uvicorn still has everything `edge.protocols.websocket` relies on in its
classes, checked twice: by `check_uvicorn` (what `serve` runs at start-up, from uvicorn's
source), and by building uvicorn's own protocols on a real socket and looking at them.

To try another uvicorn (or websockets): a throwaway venv with the project installed and that
version on top, then this file, tests/test_hostile_ws.py, tests/test_wire.py and
tests/test_delivery.py run with its python; widen UVICORN_REQUIREMENT (pyproject.toml and
`edge.protocols.websocket`) only to what passed.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import gc
import os
import socket
import tomllib
import types
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from edge.frame_writer import FRAME_WRITER_EXTENSION, text_frame
from edge.protocols.contract import (
    UVICORN_RELIANCE,
    UVICORN_REQUIREMENT,
    WEBSOCKET_PROTOCOL_ATTRIBUTES,
    WEBSOCKETS_REQUIREMENT,
    Reliance,
    UvicornContractError,
    _changes,
    attributes_set_by,
    check_uvicorn,
)
from edge.protocols.websocket import EdgeWebSocketProtocol
from tests.harness import ROOT

pytestmark = pytest.mark.anyio


def test_the_installed_uvicorn_has_everything_the_edge_protocols_rely_on() -> None:
    check_uvicorn()


def test_pyproject_requires_exactly_the_tested_versions() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert UVICORN_REQUIREMENT in project["dependencies"]
    assert WEBSOCKETS_REQUIREMENT in project["dependencies"]


def test_every_attribute_uvicorns_websocket_protocol_sets_has_a_slot_in_the_edges() -> None:
    """Else it would land in an instance dict, which the edge's protocol avoids: that dict
    was 1.9 KB of each socket's memory."""
    assert set(WEBSOCKET_PROTOCOL_ATTRIBUTES) == attributes_set_by(WebSocketsSansIOProtocol)
    assert set(WEBSOCKET_PROTOCOL_ATTRIBUTES) <= set(EdgeWebSocketProtocol.__slots__)


def _reliance_on(owner: type) -> Reliance:
    return next(reliance for reliance in UVICORN_RELIANCE if reliance.owner is owner)


def test_a_change_in_uvicorn_is_named_exactly_with_the_tested_range() -> None:
    """As if uvicorn had renamed an attribute, changed a signature, stopped calling an
    override and called a new method on the replaced queue: each one is named."""
    real = _reliance_on(WebSocketsSansIOProtocol)
    upgraded = dataclasses.replace(
        real,
        attributes=(*real.attributes, "close_handle"),
        methods={**real.methods, "handle_connect": ("self", "request")},
        calls={**real.calls, "handle_events": ("handle_upgrade",)},
        uses={**real.uses, "queue": frozenset({"put_nowait", "get"})},
    )
    with pytest.raises(UvicornContractError) as raised:
        check_uvicorn((upgraded, *UVICORN_RELIANCE[1:]))
    message = str(raised.value)
    assert "WebSocketsSansIOProtocol does not set self.close_handle" in message
    assert (
        "WebSocketsSansIOProtocol.handle_connect takes (self, event), not (self, request)"
        in message
    )
    assert "WebSocketsSansIOProtocol.handle_events does not call self.handle_upgrade()" in message
    assert (
        "WebSocketsSansIOProtocol calls self.queue.empty(), which its replacement here lacks"
        in message
    )
    assert UVICORN_REQUIREMENT in message
    assert WEBSOCKETS_REQUIREMENT in message
    assert message.count(";") == 3  # nothing else: the real classes match


async def _accept_and_wait(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await receive()  # websocket.disconnect


def _upgrade_request(query: bytes = b"") -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        b"GET /socket" + query + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )


def _missing(instance: object, reliance: Reliance) -> list[str]:
    return [name for name in reliance.attributes if not hasattr(instance, name)]


async def test_uvicorns_own_protocols_built_on_a_real_socket_have_every_named_attribute() -> None:
    """uvicorn's classes, not the edge's: the WebSocket one after a real handshake (it sets
    the scope, request and response there), the HTTP one once connected."""
    config = Config(app=_accept_and_wait, ws="websockets-sansio", http="httptools", lifespan="off")
    config.load()
    server_state = ServerState()
    loop = asyncio.get_running_loop()
    assert _missing(server_state, _reliance_on(ServerState)) == []

    ws = WebSocketsSansIOProtocol(config, server_state, {}, loop)
    ours, theirs = socket.socketpair()
    transport, _ = await loop.connect_accepted_socket(lambda: ws, ours)
    try:
        ws.data_received(_upgrade_request())
        assert _missing(ws, _reliance_on(WebSocketsSansIOProtocol)) == []
    finally:
        theirs.close()
        async with asyncio.timeout(5):
            await asyncio.gather(*ws.tasks)  # the app sees the disconnect and returns
        transport.close()

    http = HttpToolsProtocol(config, server_state, {}, loop)
    ours, theirs = socket.socketpair()
    transport, _ = await loop.connect_accepted_socket(lambda: http, ours)
    try:
        assert _missing(http, _reliance_on(HttpToolsProtocol)) == []
    finally:
        transport.close()
        theirs.close()


class _LooksLikeUvicornButIsNot(asyncio.Protocol):
    """What the check must not mistake for the real thing."""

    queue: Any
    frames: list[bytes]
    curr_msg_data_type: str | None

    def __init__(self) -> None:
        # self.close_timer = None  (a comment naming an attribute sets nothing)
        self.described = "self.read_paused = True"  # nor does a string
        self.frames, self.curr_msg_data_type = [], None  # an unpacking does set both

    def handle_events(self) -> None:
        self.queue.put_nowait(None)
        self.queue.frob()  # a method the replacement queue lacks


def test_a_comment_a_string_or_an_inherited_method_does_not_satisfy_the_contract() -> None:
    changes = _changes(
        Reliance(
            _LooksLikeUvicornButIsNot,
            attributes=("close_timer", "read_paused", "frames", "curr_msg_data_type"),
            methods={"data_received": ("self", "data")},  # only asyncio.Protocol's
            calls={"handle_events": ("handle_connect",)},
            uses={"queue": frozenset({"put_nowait", "get", "empty"})},
        )
    )
    assert changes == [
        "_LooksLikeUvicornButIsNot does not set self.close_timer",
        "_LooksLikeUvicornButIsNot does not set self.read_paused",
        "_LooksLikeUvicornButIsNot.data_received is missing",
        "_LooksLikeUvicornButIsNot.handle_events does not call self.handle_connect()",
        "_LooksLikeUvicornButIsNot calls self.queue.frob(), which its replacement here lacks",
    ]


def _holding(root: object, text: bytes) -> list[object]:
    """The strings and bytes reachable from `root` that contain `text`, modules, classes,
    functions and event loops left out (they reach the whole process)."""
    found: list[object] = []
    seen: set[int] = set()
    todo = [root]
    while todo:
        item = todo.pop()
        if id(item) in seen or isinstance(
            item, types.ModuleType | type | types.FunctionType | asyncio.AbstractEventLoop
        ):
            continue
        seen.add(id(item))
        if isinstance(item, str | bytes | bytearray):
            raw = item.encode(errors="replace") if isinstance(item, str) else bytes(item)
            if text in raw:
                found.append(item)
            continue
        todo.extend(gc.get_referents(item))
    return found


async def test_the_edge_protocol_offers_itself_as_the_sockets_frame_writer() -> None:
    """What makes `insight edge` the direct-write path (and plain uvicorn the ASGI one): after
    the handshake, the app finds the protocol in the scope, and its frames reach the peer.
    And once open, the socket holds its state in slots, and nothing of the request's query,
    where a token may be: not websockets' parser, uvicorn's scope, nor the app's task."""
    offered: asyncio.Future[object] = asyncio.get_running_loop().create_future()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        offered.set_result(scope["extensions"].get(FRAME_WRITER_EXTENSION))
        await receive()  # websocket.disconnect

    config = Config(app=app, ws=EdgeWebSocketProtocol, lifespan="off")
    config.load()
    loop = asyncio.get_running_loop()
    protocol = EdgeWebSocketProtocol(config, ServerState(), {}, loop)
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    transport, _ = await loop.connect_accepted_socket(lambda: protocol, ours)
    try:
        # Kept only reversed here, so that this test's own frame is not what is found.
        reversed_token = os.urandom(24).hex()
        protocol.data_received(_upgrade_request(b"?token=" + reversed_token[::-1].encode()))
        async with asyncio.timeout(5):
            writer = await offered
            assert writer is protocol
            handshake = await loop.sock_recv(theirs, 4096)
            assert handshake.startswith(b"HTTP/1.1 101")
            assert protocol.write_frame(text_frame(b'{"type":"ui_refresh"}'))
            assert await loop.sock_recv(theirs, 4096) == text_frame(b'{"type":"ui_refresh"}')
            assert protocol.__dict__ == {}  # all of an open socket's state is in slots
            assert _holding(protocol, reversed_token[::-1].encode()) == []
    finally:
        theirs.close()
        async with asyncio.timeout(5):
            await asyncio.gather(*protocol.tasks)
        transport.close()
