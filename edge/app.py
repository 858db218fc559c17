"""The realtime edge: the ASGI app that `insight edge` serves on port 8001.

Stateless apart from its connections: every instance subscribes only to the recipients
connected to it, so instances scale out behind any load balancer without sticky sessions.

`/api/v1/insight` (and its SSE twin, and tickets) goes straight to its handler, and everything
else (probes, metrics, the client at /static, the demo when it is on, lifespan) to a FastAPI
app. A WebSocket lives for
hours, and every ASGI layer it passes through (FastAPI's exit stacks, Starlette's exception and
routing middleware) stays suspended on its stack for as long as it is open: memory held by
every connection for nothing it uses (measured: bench/results/design-figures.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import redis
from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from core.app_path import app_path
from core.config import FASTAPI_TELEMETRY_OFF, READY_CHECK_SECONDS, get_settings
from core.json_logs import configure_logging
from edge.endpoint import insight_socket
from edge.engine import BrokerFactory, Engine, redis_broker
from edge.serving import served_by_insight
from edge.sse_endpoint import insight_sse
from edge.tickets import tickets_endpoint
from realtime import asyncapi
from realtime.frames import SOCKET_PATH, SSE_PATH, TICKETS_PATH
from realtime.registry import event_registry

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"  # the client: insight.js and its types


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
    engine = Engine(settings, app.state.broker_factory)
    app.state.settings = settings
    app.state.engine = engine
    starting = asyncio.create_task(engine.start(), name="edge-engine")
    try:
        yield
    finally:
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await engine.stop()


def create_app(broker: BrokerFactory = redis_broker) -> FastAPI:
    """The edge's FastAPI app, delivering over the broker `broker` makes (Redis by default)."""
    # Before uvicorn logs "Started server process", so that every line is JSON and redacted.
    configure_logging(get_settings().log_level)
    app = FastAPI(
        title="Insight realtime edge",
        lifespan=lifespan,
        telemetry=FASTAPI_TELEMETRY_OFF,
    )
    app.state.broker_factory = broker
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
        engine: Engine = app.state.engine
        hub = engine.hub
        checks = {"redis": False, "pubsub": hub is not None and hub.feed.healthy}
        if engine.broker is not None:
            with contextlib.suppress(redis.RedisError, OSError, TimeoutError):
                async with asyncio.timeout(READY_CHECK_SECONDS):
                    checks["redis"] = await engine.broker.ping()
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

    # Built once per process, on first request (the declared events never change while it
    # runs): each takes milliseconds of the event loop that delivers the frames.
    frame_schema = functools.cache(lambda: event_registry().frame_json_schema())
    asyncapi_of_edge = functools.cache(lambda: asyncapi.render(event_registry()))

    @app.get("/api/v1/events/schema", tags=["protocol"])
    async def schema() -> dict[str, object]:
        """JSON Schema of the frames this edge sends (the declared events, the control frames)."""
        return frame_schema()

    @app.get("/asyncapi.json", tags=["protocol"])
    async def asyncapi_document() -> dict[str, object]:
        """The AsyncAPI 3.0 document of this edge's WebSocket and SSE channels and frames."""
        return asyncapi_of_edge()

    return app


class Edge:
    """The edge's ASGI app: the WebSocket and SSE endpoints first (the SSE stream and the
    ticket route behind CORS for ALLOWED_ORIGINS, so that a page on another origin may use
    them), the FastAPI app for the rest."""

    def __init__(self, api: FastAPI) -> None:
        self.api = api
        origins = get_settings().allowed_origins
        self.routes: dict[str, ASGIApp] = {
            SSE_PATH: CORSMiddleware(
                insight_sse,
                allow_origins=origins,
                allow_methods=["GET"],
                allow_headers=["Authorization", "Last-Event-ID"],
            ),
            TICKETS_PATH: CORSMiddleware(
                tickets_endpoint,
                allow_origins=origins,
                allow_methods=["POST"],
                allow_headers=["Authorization"],
            ),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and app_path(scope) == SOCKET_PATH:
            scope["app"] = self.api  # where the handler finds settings and the hub
            await insight_socket(WebSocket(scope, receive, send))
        elif scope["type"] == "http" and (route := self.routes.get(app_path(scope))):
            scope["app"] = self.api
            await route(scope, receive, send)
        else:
            await self.api(scope, receive, send)


app = Edge(create_app())
