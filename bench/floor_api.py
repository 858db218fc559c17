"""The floor under `POST /api/v1/publish`: a bare ASGI app on uvicorn, with no FastAPI, no
schema and no publish, so that the job API's figures in `bench.server_api` can be read
against what any Python HTTP endpoint on this stack costs.

`uvicorn bench.floor_api:app` answers every request with a fixed JSON body once it has read
the request's body. With `FLOOR_REDIS_URL` set, it first makes one Redis round trip, of the
kind `FLOOR_REDIS_CALL` names:

- `client`: PING through redis-py's asyncio client, made as the job API's own
  (`realtime.publisher`'s `_new_async_event_log`), with every layer of `execute_command`;
- `evalsha`: EVALSHA of a one-line script through the job API's own call path
  (`realtime.broker.evalsha.evalsha_async` on that client): the least a publish through it
  can cost;
- `bare`: PING on a connection of the floor's own, an asyncio protocol that packs nothing
  and parses the reply with hiredis: what a Redis connection of Insight's own would cost.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from typing import cast
from urllib.parse import urlsplit

import hiredis
import redis.asyncio
from starlette.types import Receive, Scope, Send

from realtime.broker.call import Call, Lua
from realtime.broker.evalsha import evalsha_async
from realtime.broker.topology import waiting_client
from realtime.publisher import ASYNC_CONNECTIONS, POOL_WAIT_SECONDS

_ANSWER = b'{"id":"floor"}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(_ANSWER))]
_PING = b"*1\r\n$4\r\nPING\r\n"
_ONE = Lua("return 1")


class _BareRedis(asyncio.Protocol):
    """One Redis connection: commands written as they come, replies parsed with hiredis and
    handed to their callers in order. No timeout, no reconnect: a floor, not a client."""

    def __init__(self) -> None:
        self._reader = hiredis.Reader()
        self._waiting: deque[asyncio.Future[object]] = deque()
        self._transport: asyncio.Transport | None = None

    @classmethod
    async def open(cls, url: str) -> _BareRedis:
        parts = urlsplit(url)
        host, port = parts.hostname or "localhost", parts.port or 6379
        _, bare = await asyncio.get_running_loop().create_connection(cls, host, port)
        return bare

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            self._waiting.popleft().set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        while self._waiting:
            self._waiting.popleft().set_exception(exc or ConnectionError("redis closed"))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def call(self, packed: bytes) -> asyncio.Future[object]:
        assert self._transport is not None
        reply = asyncio.get_running_loop().create_future()
        self._waiting.append(reply)
        self._transport.write(packed)
        return reply


_clients: list[redis.asyncio.Redis] = []  # made on the first request, on the server's loop
_bare: list[_BareRedis] = []


async def _round_trip(url: str, kind: str) -> None:
    if kind == "bare":
        if not _bare:
            _bare.append(await _BareRedis.open(url))
        await _bare[0].call(_PING)
        return
    if not _clients:
        _clients.append(
            waiting_client(
                url,
                POOL_WAIT_SECONDS,
                health_check_interval=30,
                socket_timeout=5,
                max_connections=ASYNC_CONNECTIONS,
            )
        )
    if kind == "evalsha":
        await evalsha_async(_clients[0], Call(_ONE, ["floor"], [], int))
    else:
        await _clients[0].ping()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":  # lifespan: nothing to start or stop
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
        return
    while (await receive()).get("more_body", False):
        pass
    url = os.environ.get("FLOOR_REDIS_URL")
    if url:
        await _round_trip(url, os.environ.get("FLOOR_REDIS_CALL", "client"))
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _ANSWER})
