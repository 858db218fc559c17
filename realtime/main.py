"""The realtime edge: the ASGI app that `insight edge` serves on port 8001.

Stateless apart from its connections: every instance subscribes only to the recipients
connected to it, so instances scale out behind any load balancer without sticky sessions.

`/api/v1/insight` goes straight to its handler, and everything else (probes, metrics, the
client at /static, the demo when it is on, lifespan) to a FastAPI app. A WebSocket lives for
hours, and every ASGI layer it passes through (FastAPI's exit stacks, Starlette's exception and
routing middleware) stays suspended on its stack for as long as it is open: memory held by
every connection for nothing it uses (measured: bench/results/design-figures.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

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

from core.config import READY_CHECK_SECONDS, Settings, get_settings
from core.json_logs import configure_logging
from realtime.close_codes import CloseCode
from realtime.endpoint import SOCKET_PATH, insight_socket
from realtime.eventlog import AsyncEventLog
from realtime.events import frame_json_schema
from realtime.hub import Hub
from realtime.presence import Presence
from realtime.publisher import retention_of
from realtime.serving import served_by_insight
from realtime.telemetry import HubCollector
from realtime.topology import (
    ClusterTopology,
    SingleNode,
    Topology,
    async_client,
    is_cluster_async,
)

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"  # the client: insight.js and its types

CLUSTER_READS = 32  # reads from the logs in flight at once, on a cluster
PRESENCE_CALLS = 16  # presence scripts in flight at once, on a cluster (within the pool too)


class Events:
    """The edge's hub and events Redis client, once that Redis has answered. It may not at
    start (not up yet, or a wrong password): the edge then serves its probes, reports itself
    unready and refuses sockets with 1013, and keeps trying, with backoff."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hub: Hub | None = None
        self.presence: Presence | None = None
        self.client: redis.asyncio.Redis | redis.asyncio.RedisCluster | None = None
        self._collector: HubCollector | None = None

    async def connect(self) -> None:
        delay = 0.05
        while True:
            try:
                client, topology, home = await _events_redis(self.settings)
            except redis.AuthenticationError as error:
                logger.warning("redis AUTH failed", extra={"error": str(error)})
            except (redis.RedisError, OSError) as error:
                logger.warning("events redis unavailable", extra={"error": str(error)})
            else:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        concurrency = None if home is not None else CLUSTER_READS
        hub = Hub(
            topology,
            AsyncEventLog(client, retention_of(self.settings), concurrency=concurrency),
            subscribe_timeout=self.settings.ws_subscribe_timeout_seconds,
            ping_interval=self.settings.pubsub_ping_interval_seconds,
            replay_budget=self.settings.ws_replay_max_bytes,
            home=home,
        )
        self._collector = HubCollector(hub)
        REGISTRY.register(self._collector)
        await hub.start()
        presence = Presence(
            client,
            ttl_seconds=self.settings.presence_ttl_seconds,
            max_per_user=self.settings.ws_max_connections_per_user,
            on_revoked=hub.revoke,
            concurrency=None if home is not None else PRESENCE_CALLS,
        )
        presence.start()
        self.client, self.hub, self.presence = client, hub, presence

    async def close(self) -> None:
        if self._collector is not None:
            REGISTRY.unregister(self._collector)
        if self.hub is not None:
            self.hub.close_all(CloseCode.SERVER_RESTARTING)
        if self.presence is not None:
            await self.presence.stop()
        if self.hub is not None:
            await self.hub.stop()
        if self.client is not None:
            await self.client.aclose()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    if not served_by_insight() and settings.environment != "development":
        logger.warning(
            "the edge is served without `insight edge`: handshakes are not bounded in time or "
            "size, and a peer that stops reading is not dropped; use `insight edge` outside "
            "development",
            extra={"environment": settings.environment},
        )
    events = Events(settings)
    app.state.settings = settings
    app.state.events = events
    connecting = asyncio.create_task(events.connect(), name="events-redis")
    try:
        yield
    finally:
        connecting.cancel()
        await asyncio.gather(connecting, return_exceptions=True)
        await events.close()


async def _events_redis(
    settings: Settings,
) -> tuple[redis.asyncio.Redis | redis.asyncio.RedisCluster, Topology, str | None]:
    """The events Redis's client, its topology, and the node to stay connected to (one
    Redis) or None (a cluster: the masters the connected users' channels live on)."""
    url = settings.events_url
    # Replays are reads: after a Redis restart or a failover, they are retried.
    retry = Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=5)
    if await is_cluster_async(url):
        cluster = await async_client(
            url,
            # Per node; redis-py refuses a call past it rather than wait, and one read may
            # take more than one (a script not loaded yet is loaded on every master).
            max_connections=4 * CLUSTER_READS,
            socket_timeout=5,
            socket_connect_timeout=5,
            retry=retry,
        )
        assert isinstance(cluster, redis.asyncio.RedisCluster)
        return cluster, ClusterTopology(cluster, url), None
    # A bounded pool that makes callers wait for a free connection: a burst of connects
    # queues its replays instead of opening a Redis connection per WebSocket.
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=32,
        timeout=settings.ws_subscribe_timeout_seconds,
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry=retry,
    )
    return (
        redis.asyncio.Redis(connection_pool=pool, auto_close_connection_pool=True),
        SingleNode(url),
        url,
    )


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
    if get_settings().demo_on:
        import demo  # here, not at the top: an edge without the demo carries none of it

        demo.mount(app)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up and serving."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], response_model=None)
    async def readyz() -> JSONResponse:
        """Redis answers and the pub/sub connection is live: safe to route clients here."""
        events: Events = app.state.events
        hub = events.hub
        checks = {"redis": False, "pubsub": hub is not None and hub.feed.healthy}
        if events.client is not None:
            with contextlib.suppress(redis.RedisError, OSError, TimeoutError):
                async with asyncio.timeout(READY_CHECK_SECONDS):
                    checks["redis"] = bool(await events.client.ping())
        ready = all(checks.values())
        body = {
            "status": "ready" if ready else "unavailable",
            "checks": checks,
            "connections": hub.count if hub is not None else 0,
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def prometheus_metrics() -> PlainTextResponse:
        """Prometheus metrics of this edge process."""
        return PlainTextResponse(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/v1/events/schema", tags=["protocol"])
    async def schema() -> dict[str, object]:
        """JSON Schema of the frames this edge sends (the five UI events, the control frames)."""
        return frame_json_schema()

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
