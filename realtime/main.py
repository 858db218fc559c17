"""The realtime edge: the ASGI app that `insight edge` serves on port 8001.

Stateless apart from its connections: every instance subscribes only to the recipients
connected to it, so instances scale out behind any load balancer without sticky sessions.

`/api/v1/insight` goes straight to its handler, and everything else (probes, metrics, the
demo, lifespan) to a FastAPI app. A WebSocket lives for hours, and every ASGI layer it passes
through (FastAPI's exit stacks, Starlette's exception and routing middleware) stays suspended
on its stack for as long as it is open: at tens of thousands of sockets per process, those
layers were a sixth of each connection's memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio
from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from core.config import get_settings
from core.logging import configure_logging
from realtime import demo
from realtime.demo import STATIC
from realtime.endpoint import SOCKET_PATH, insight_socket
from realtime.eventlog import AsyncEventLog
from realtime.events import event_json_schema
from realtime.hub import Hub
from realtime.metrics import HubCollector
from realtime.protocol import CloseCode
from realtime.publisher import retention_of


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    # A bounded pool that makes callers wait for a free connection: a burst of connects
    # queues its replays instead of opening a Redis connection per WebSocket.
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        settings.events_url,
        max_connections=32,
        timeout=settings.ws_subscribe_timeout_seconds,
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=30,
        # Replays are reads: after a Redis restart, stale pooled connections are retried.
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=5),
    )
    client = redis.asyncio.Redis(connection_pool=pool)
    hub = Hub(
        settings.events_url,
        AsyncEventLog(client, retention_of(settings)),
        subscribe_timeout=settings.ws_subscribe_timeout_seconds,
        ping_interval=settings.pubsub_ping_interval_seconds,
    )
    app.state.settings = settings
    app.state.redis = client
    app.state.hub = hub
    collector = HubCollector(hub)
    REGISTRY.register(collector)
    await hub.start()
    try:
        yield
    finally:
        REGISTRY.unregister(collector)
        hub.close_all(CloseCode.SERVER_RESTARTING)
        await hub.stop()
        await client.aclose()
        await pool.aclose()


def create_app() -> FastAPI:
    # Before uvicorn logs "Started server process", so that every line is JSON and redacted.
    configure_logging(get_settings().log_level)
    app = FastAPI(title="Insight realtime edge", lifespan=lifespan)
    # insight.js is an ES module: a page on another origin (the app on :3000, the edge on
    # :8001) may import it only with CORS, which the origins of ALLOWED_ORIGINS get (and
    # no other: no Access-Control-Allow-Origin for them, and Vary: Origin for caches).
    static = CORSMiddleware(
        StaticFiles(directory=STATIC),
        allow_origins=get_settings().allowed_origins,
        allow_methods=["GET", "HEAD"],
    )
    app.mount("/static", static, name="static")
    app.include_router(demo.router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up and serving."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], response_model=None)
    async def readyz() -> JSONResponse:
        """Redis answers and the pub/sub connection is live: safe to route clients here."""
        hub: Hub = app.state.hub
        checks = {"redis": False, "pubsub": hub.pubsub.connected.is_set()}
        with contextlib.suppress(redis.RedisError):
            checks["redis"] = bool(await app.state.redis.ping())
        ready = all(checks.values())
        body = {
            "status": "ready" if ready else "unavailable",
            "checks": checks,
            "connections": hub.count,
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def prometheus_metrics() -> PlainTextResponse:
        """Prometheus metrics of this edge process."""
        return PlainTextResponse(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/v1/events/schema", tags=["protocol"])
    async def schema() -> dict[str, object]:
        """JSON Schema of the frames this edge sends (the five UI events)."""
        return event_json_schema()

    return app


class Edge:
    """The edge's ASGI app: the WebSocket endpoint first, the FastAPI app for the rest."""

    def __init__(self, api: FastAPI) -> None:
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and _route_path(scope) == SOCKET_PATH:
            scope["app"] = self.api  # where the handler finds settings and the hub
            await insight_socket(WebSocket(scope, receive, send))
        else:
            await self.api(scope, receive, send)


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


app = Edge(create_app())
