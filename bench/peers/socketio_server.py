"""The python-socketio peer: AsyncServer with AsyncRedisManager under uvicorn, each client in
the room `user:<id>` given by its query string; producers use RedisManager(write_only=True)."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qs

import socketio

manager = socketio.AsyncRedisManager(os.environ["REDIS_URL"])
sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager, cors_allowed_origins="*")


@sio.event  # type: ignore[untyped-decorator]
async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
    user = parse_qs(environ.get("QUERY_STRING", ""))["user"][0]
    await sio.enter_room(sid, f"user:{user}")


app = socketio.ASGIApp(sio)
