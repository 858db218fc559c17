"""The job API: `uvicorn api.main:app` (port 8000). HTTP only; the work happens in workers/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from starlette.types import ASGIApp

from api.middleware import RequestId
from api.publish_lane import PublishLane
from api.refusals import JsonCORSMiddleware, invalid_request
from api.routes import (
    health,
    job_events,
    jobs,
    metrics,
    orders,
    payments,
    presence,
    publish,
    users,
    webhooks,
)
from api.schemas import MAX_BODY_BYTES
from api.telemetry import Measure, metrics_endpoint
from core.config import FASTAPI_TELEMETRY_OFF, get_settings
from core.json_logs import configure_logging

API_PREFIX = "/api/v1"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    app.state.settings = settings
    app.state.redis = redis.asyncio.Redis.from_url(
        settings.events_url, socket_timeout=5, socket_connect_timeout=5
    )
    yield
    await app.state.redis.aclose()
    if getattr(app.state, "job_broker", None) is not None:  # job streams were served
        await app.state.job_broker.close()


class JobAPI(FastAPI):
    """The job API's FastAPI, with the publish lane (api/publish_lane.py says why) outside all
    of its middleware, Starlette's own too: the first layer a request meets."""

    # None: every publish takes the route (set before the app's first call, lifespan
    # included: Starlette builds the stack then).
    publish_lane: str | None = f"{API_PREFIX}/publish"

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        if self.publish_lane is None:
            return stack
        limit = publish.BODY_LIMITS[self.publish_lane.removeprefix(API_PREFIX)]
        return PublishLane(stack, self.publish_lane, limit)


def create_app() -> JobAPI:
    app = JobAPI(
        title="Insight job API",
        description="Submit long jobs; their progress and outcome reach the user's page "
        "through the realtime edge (WebSocket /api/v1/insight).",
        lifespan=lifespan,
        telemetry=FASTAPI_TELEMETRY_OFF,
    )

    settings = get_settings()
    # Before uvicorn logs "Started server process", so that every line is JSON and redacted.
    configure_logging(settings.log_level)
    # Not FastAPI's max_body_size: Starlette answers its 413 in text/plain; this one in JSON.
    # The publish routes take bigger bodies than the rest (api/schemas.py says why).
    app.add_middleware(
        publish.BodyLimits,
        max_bytes=MAX_BODY_BYTES,
        by_path={
            f"{API_PREFIX}{path}": limit
            for path, limit in {**publish.BODY_LIMITS, **orders.BODY_LIMITS}.items()
        },
    )
    # The demo page (served by the edge) and other browser clients call the API cross-origin.
    app.add_middleware(
        JsonCORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_methods=["GET", "POST"],
        allow_headers=[
            "Authorization",
            "Content-Type",
            "Idempotency-Key",
            "Insight-Client",
            "X-Request-ID",
        ],
        expose_headers=["Location", "X-Request-ID"],
        max_age=600,
    )

    app.add_middleware(RequestId)
    app.add_middleware(Measure)  # outermost: it times the whole of a request
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_api_route(
        "/metrics",
        metrics_endpoint,
        methods=["GET"],
        tags=["health"],
        response_class=PlainTextResponse,
        responses={200: {"description": "Prometheus text format"}},
    )
    for router in (
        orders.router,
        payments.router,
        metrics.router,
        jobs.router,
        job_events.router,
        webhooks.router,
        publish.router,
        presence.router,
        users.router,
    ):
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(health.router)
    return app


app = create_app()
