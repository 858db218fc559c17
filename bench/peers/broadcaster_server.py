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
    channel = websocket.query_params.get("channel") or f"user:{user}"  # a broadcast's: one for all
    await websocket.accept()
    async with broadcast.subscribe(channel=channel) as subscriber:
        await websocket.send_text("ready")
        async for event in subscriber:  # type: ignore[union-attr]
            if event is not None:
                await websocket.send_text(event.message)


@asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    await broadcast.connect()
    # broadcaster's Redis listener stops for good when it starts reading before the first
    # SUBSCRIBE took effect, until a subscription to another channel restarts it: with every
    # socket on one channel (a broadcast, scenario 15), nothing would arrive. A channel held
    # from the start takes that first subscription.
    async with broadcast.subscribe(channel="bench:warm"):
        yield
    await broadcast.disconnect()


app = Starlette(routes=[WebSocketRoute("/ws", endpoint)], lifespan=lifespan)
