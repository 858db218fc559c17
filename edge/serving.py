"""How an edge process is served: the uvicorn options its delivery path depends on.

Every way of starting an edge (`insight edge`, `make run`, docker-compose, the tests and the
benchmarks) goes through `serve`, so none of them can drift from these choices:

- `EdgeWebSocketProtocol` (`edge.protocols.websocket`): uvicorn's leanest WebSocket protocol,
  `websockets-sansio`, which also lets the fan-out write an event's frame, encoded once, to
  each socket. Nothing is written to a paused transport, so a slow client's backlog stays in
  its own send buffer, where the 1013 policy sees it.
- no per-message deflate: browsers offer it by default, and compressing every small frame
  separately for every connection costs more CPU than the bytes it saves.
- `ws_max_size` from WS_MAX_MESSAGE_BYTES: the protocol refuses an oversized inbound frame
  before it is buffered.
- a garbage collector tuned for many long-lived connections (see `tune_gc`).
- heartbeats from WS_PING_INTERVAL_SECONDS and WS_PING_TIMEOUT_SECONDS: a peer that vanished
  without closing its TCP connection is found and its subscriptions released.
- `EdgeHttpProtocol` (`edge.protocols.http`): uvicorn's httptools protocol with each
  request head (a WebSocket handshake included) bounded to WS_HANDSHAKE_TIMEOUT_SECONDS and
  `MAX_HEAD_BYTES`, so that a slow or endless head cannot hold a socket (slowloris).

This module uses only uvicorn's public interface (`uvicorn.run` and its options) and is the
one importer of `edge.protocols`, which holds every use of uvicorn's internals;
`serve` checks first that the installed uvicorn still has what those rely on.
"""

from __future__ import annotations

import gc
import math
from typing import Any

from core.config import Settings
from edge.protocols.contract import check_uvicorn
from edge.protocols.http import edge_http_protocol
from edge.protocols.websocket import edge_websocket_protocol

APP = "edge.app:app"
GRACEFUL_SHUTDOWN_SECONDS = 5


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "http": edge_http_protocol(
            settings.ws_handshake_timeout_seconds, settings.ws_shutdown_drain_seconds
        ),
        "ws": edge_websocket_protocol(settings.ws_shutdown_drain_seconds),
        "ws_per_message_deflate": False,
        "ws_max_size": settings.ws_max_message_bytes,
        "ws_ping_interval": settings.ws_ping_interval_seconds,
        "ws_ping_timeout": settings.ws_ping_timeout_seconds,
        # The drain, then what the last sockets' closes and the app's shutdown may take.
        "timeout_graceful_shutdown": math.ceil(
            settings.ws_shutdown_drain_seconds + GRACEFUL_SHUTDOWN_SECONDS
        ),
    }


# Allocations between young collections, and collections between older ones (default 700,
# 10, 10). Chosen with `python -m bench` (reconnect storms, and p99 under steady traffic);
# the figures are in bench/results/design-figures.md.
GC_THRESHOLDS = (10_000, 20, 100)


def tune_gc() -> None:
    """Collect less often. Each connection keeps a few hundred objects alive for as long as
    it is open, and with the default thresholds the collector keeps rescanning them: during
    a burst of connects it took a large share of the process's CPU time, and during traffic
    its pauses were the p99. Frames and buffers are freed by reference counting, not by the
    collector, so collecting less often costs little memory."""
    gc.set_threshold(*GC_THRESHOLDS)


_served_here = False  # set by `serve` before uvicorn imports the app, in the same process


def served_by_insight() -> bool:
    """Whether this process serves the edge through `serve` (`insight edge`), with the
    protocols that bound handshakes and closes; else it is plain uvicorn or another server."""
    return _served_here


def serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    global _served_here
    check_uvicorn()
    tune_gc()
    _served_here = True
    uvicorn.run(APP, host=host, port=port, **uvicorn_options(settings))
