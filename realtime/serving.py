"""How an edge process is served: the uvicorn options its delivery path depends on.

Every way of starting an edge (`insight edge`, `make run`, docker-compose, the tests and the
benchmarks) goes through `serve`, so none of them can drift from these choices:

- `websockets-sansio`: uvicorn's leanest WebSocket protocol. Each send is one frame encode
  and one `transport.write`, and it still waits while the transport is paused, so a slow
  client's backlog stays in its own send buffer, where the 1013 policy sees it.
- no per-message deflate: browsers offer it by default, and compressing every small frame
  separately for every connection costs more CPU than the bytes it saves.
- `ws_max_size` from WS_MAX_MESSAGE_BYTES: the protocol refuses an oversized inbound frame
  before it is buffered.
- heartbeats from WS_PING_INTERVAL_SECONDS and WS_PING_TIMEOUT_SECONDS: a peer that vanished
  without closing its TCP connection is found and its subscriptions released.
"""

from __future__ import annotations

from typing import Any

from core.config import Settings

APP = "realtime.main:app"
GRACEFUL_SHUTDOWN_SECONDS = 5


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "ws": "websockets-sansio",
        "ws_per_message_deflate": False,
        "ws_max_size": settings.ws_max_message_bytes,
        "ws_ping_interval": settings.ws_ping_interval_seconds,
        "ws_ping_timeout": settings.ws_ping_timeout_seconds,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
    }


def serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(APP, host=host, port=port, **uvicorn_options(settings))
