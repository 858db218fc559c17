"""The encode/broadcaster peer: a Starlette WebSocket endpoint, one Redis channel per user."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from broadcaster import Broadcast
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

broadcast = Broadcast(os.environ["REDIS_URL"])


async def endpoint(websocket: WebSocket) -> None:
    user = websocket.query_params["user"]
    await websocket.accept()
    async with broadcast.subscribe(channel=f"user:{user}") as subscriber:
        await websocket.send_text("ready")
        async for event in subscriber:  # type: ignore[union-attr]
            if event is not None:
                await websocket.send_text(event.message)


@asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    await broadcast.connect()
    yield
    await broadcast.disconnect()


app = Starlette(routes=[WebSocketRoute("/ws", endpoint)], lifespan=lifespan)
