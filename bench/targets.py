"""The servers compared, each with how to start it, how a user connects to it, and how a
producer in another process pushes an event to one user.

- insight: `insight edge`; the producer is UIManager, which also writes the durable log.
- socketio: python-socketio's AsyncServer with AsyncRedisManager under uvicorn; the producer
  is RedisManager(write_only=True).emit(..., room="user:<id>"), as from a Celery task.
- broadcaster: encode/broadcaster behind a Starlette WebSocket endpoint, a channel per user.
- floor: raw Redis PUBLISH to SUBSCRIBE between two processes, no WebSocket at all.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from bench.common import start_edge, start_uvicorn

Publish = Callable[[str, dict[str, Any]], object]

PEER_APPS = {
    "socketio": "bench.peers.socketio_server:app",
    "broadcaster": "bench.peers.broadcaster_server:app",
}


@dataclass(frozen=True)
class Target:
    name: str

    @property
    def has_server(self) -> bool:
        return self.name != "floor"

    @property
    def resumes(self) -> bool:
        """Whether a reconnecting client can ask for what it missed (`since`)."""
        return self.name == "insight"

    def start(self, port: int, redis_url: str) -> subprocess.Popen[bytes] | None:
        if self.name == "insight":
            return start_edge(port, redis_url)
        if self.name in PEER_APPS:
            return start_uvicorn(PEER_APPS[self.name], port, redis_url)
        return None

    def path(self, user: str, token: str | None, since: str | None) -> str:
        if self.name == "insight":
            cursor = f"&since={quote(since)}" if since else ""
            return f"/api/v1/insight?token={token}{cursor}"
        if self.name == "socketio":
            return f"/socket.io/?EIO=4&transport=websocket&user={user}"
        return f"/ws?user={user}"

    def publisher(self, redis_url: str) -> Publish:
        """How a producer process sends `data` to one user (called once per process)."""
        if self.name == "insight":
            os.environ.update(REDIS_URL=redis_url, ENVIRONMENT="development")
            from realtime import Recipient, UIManager

            return lambda user, data: UIManager(Recipient.user(user)).update_ui(data)
        if self.name == "socketio":
            import socketio

            manager = socketio.RedisManager(redis_url, write_only=True)
            return lambda user, data: manager.emit("ui", data, room=f"user:{user}")
        import redis

        client = redis.Redis.from_url(redis_url)
        return lambda user, data: client.publish(f"user:{user}", json.dumps(data))


TARGETS = tuple(Target(name) for name in ("insight", "socketio", "broadcaster", "floor"))
BY_NAME = {target.name: target for target in TARGETS}
