"""The floor under `POST /api/v1/publish`: a bare ASGI app on uvicorn, with no FastAPI, no
schema and no publish, so that the job API's figures in `bench.server_api` can be read
against what any Python HTTP endpoint on this stack costs.

`uvicorn bench.floor_api:app` answers every request with a fixed JSON body once it has read
the request's body. With `FLOOR_REDIS_URL` set, it first makes one Redis round trip (PING)
through redis-py's asyncio client, made as the job API's own (`realtime.publisher`'s
`_new_async_event_log`): the least a publish through that client can cost.
"""

from __future__ import annotations

import os

import redis.asyncio
from starlette.types import Receive, Scope, Send

from realtime.broker.topology import waiting_client
from realtime.publisher import ASYNC_CONNECTIONS, POOL_WAIT_SECONDS

_ANSWER = b'{"id":"floor"}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(_ANSWER))]
_clients: list[redis.asyncio.Redis] = []  # made on the first request, on the server's loop


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
        await _clients[0].ping()
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _ANSWER})
