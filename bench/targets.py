"""The servers compared, each with how to start it, how a user connects to it, and how a
producer in another process pushes an event to one user.

- insight: `insight edge`; the producer is UIManager, which also writes the durable log
  (by default with the key UIManager makes per call; `idempotency_keys` passes one per event
  as `idempotency_key=`, and `min_replicas` sets EVENTS_MIN_REPLICAS).
- socketio: python-socketio's AsyncServer with AsyncRedisManager under uvicorn; the producer
  is RedisManager(write_only=True).emit(..., room="user:<id>"), as from a Celery task.
- broadcaster: encode/broadcaster behind a Starlette WebSocket endpoint, a channel per user.
- floor: raw Redis PUBLISH to SUBSCRIBE between two processes, no WebSocket at all.

And one diagnostic, run only where the rate a whole machine can publish is the question
(scenario 2): `insight-edge`, the same Insight edge fed by a plain SPUBLISH of announcements
on its live channels, without the durable-log write, to show the edge's own limit apart from
the cost of the log.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench.baseline import use_code
from bench.common import start_edge, start_uvicorn

Publish = Callable[[str, dict[str, Any]], object]
Broadcast = Callable[[dict[str, Any]], object]

# Scenario 15 (bench.broadcast): a user whose name starts with BROADCAST_USER listens to
# broadcasts (on broadcaster, its socket subscribes to the EVERYONE channel instead of its own;
# on Insight, every connection listens as everyone anyway).
BROADCAST_USER = "all-"
EVERYONE = "everyone"

EDGE_ONLY = "insight-edge"
SSE = "insight-sse"  # the Insight edge, its clients on Server-Sent Events (docs/sse.md)
PEER_APPS = {
    "socketio": "bench.peers.socketio_server:app",
    "broadcaster": "bench.peers.broadcaster_server:app",
}


@dataclass(frozen=True)
class Target:
    name: str
    idempotency_keys: bool = False  # Insight's producer only, as are the next
    min_replicas: int = 0
    # Insight at another commit (`--baseline`): that commit's product packages, and its name
    code: Path | None = None
    commit: str | None = None

    @property
    def label(self) -> str:
        """The target's name in results: `insight@<commit>` for a baseline."""
        return f"{self.name}@{self.commit}" if self.commit else self.name

    @property
    def has_server(self) -> bool:
        return self.name != "floor"

    @property
    def is_insight(self) -> bool:
        """Served by the Insight edge, and spoken to in its protocol."""
        return self.name in ("insight", EDGE_ONLY, SSE)

    @property
    def resumes(self) -> bool:
        """Whether a reconnecting client can ask for what it missed (`since`)."""
        return self.name == "insight"

    def start(self, port: int, redis_url: str) -> subprocess.Popen[bytes] | None:
        if self.is_insight:
            return start_edge(port, redis_url, self.code)
        if self.name in PEER_APPS:
            return start_uvicorn(PEER_APPS[self.name], port, redis_url)
        return None

    def path(self, user: str, token: str | None, since: str | None) -> str:
        if self.name == SSE:  # the token travels in a header (bench.sse_client.SseClient)
            return "/api/v1/insight/sse" + (f"?since={quote(since)}" if since else "")
        if self.is_insight:
            cursor = f"&since={quote(since)}" if since else ""
            return f"/api/v1/insight?token={token}{cursor}"
        if self.name == "socketio":
            return f"/socket.io/?EIO=4&transport=websocket&user={user}"
        if user.startswith(BROADCAST_USER):
            return f"/ws?user={user}&channel={EVERYONE}"
        return f"/ws?user={user}"

    def _producer_process(self, redis_url: str) -> None:
        """Make this process publish as the target's producers do: a baseline's code, and for
        Insight, its events Redis."""
        if self.code is not None:
            use_code(self.code)
        if self.is_insight:
            os.environ.update(
                REDIS_URL=redis_url, EVENTS_REDIS_URL=redis_url, ENVIRONMENT="development"
            )

    def publisher(self, redis_url: str) -> Publish:
        """How a producer process sends `data` to one user (called once per process)."""
        self._producer_process(redis_url)
        if self.name in ("insight", SSE):
            if self.min_replicas:
                os.environ["EVENTS_MIN_REPLICAS"] = str(self.min_replicas)
            from realtime import Recipient, UIManager

            if self.idempotency_keys:  # unique to this process: a key repeated is not sent
                prefix = f"bench-{os.getpid()}-{time.time_ns()}-"
                return lambda user, data: UIManager(Recipient.user(user)).update_ui(
                    data, idempotency_key=f"{prefix}{data['n']}"
                )
            return lambda user, data: UIManager(Recipient.user(user)).update_ui(data)
        if self.name == EDGE_ONLY:
            return _frames_without_the_log(redis_url)
        if self.name == "socketio":
            import socketio

            manager = socketio.RedisManager(redis_url, write_only=True)
            return lambda user, data: manager.emit("ui", data, room=f"user:{user}")
        import redis

        client = redis.Redis.from_url(redis_url)
        return lambda user, data: client.publish(f"user:{user}", json.dumps(data))

    def broadcast_publisher(self, redis_url: str) -> Broadcast:
        """How a producer process sends `data` to every connection (scenario 15; Insight and
        broadcaster only)."""
        self._producer_process(redis_url)
        if self.name == "insight":
            from realtime import UIManager

            return lambda data: UIManager.broadcast().update_ui(data)
        import redis

        client = redis.Redis.from_url(redis_url)
        return lambda data: client.publish(EVERYONE, json.dumps(data))


def _frames_without_the_log(redis_url: str) -> Publish:
    """Announce an event the way the append script does (`realtime.frames`: the coalesce
    key, the event id and the body, on the recipient's sharded live channel), but store
    nothing. Built as cheaply as the peers' producers build theirs, so that the rate
    measured is the edge's."""
    import redis

    from realtime import Recipient
    from realtime.frames import announcement

    client = redis.Redis.from_url(redis_url)
    numbers = itertools.count()
    channels: dict[str, str] = {}
    epoch = str(time.time_ns() // 1000)

    def publish(user: str, data: dict[str, Any]) -> object:
        channel = channels.get(user) or channels.setdefault(user, Recipient.user(user).live_channel)
        event_id = f"u{epoch}.{time.time_ns() // 1000}-{next(numbers)}"
        body = f'{{"type":"ui_update","data":{json.dumps(data)}}}'
        return client.spublish(channel, announcement("", event_id, body))

    return publish


TARGETS = tuple(Target(name) for name in ("insight", "socketio", "broadcaster", "floor"))
BY_NAME = {target.name: target for target in TARGETS}
SSE_TARGET = Target(SSE)  # compared with Insight's WebSockets in its own scenario only
