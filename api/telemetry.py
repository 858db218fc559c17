"""Prometheus metrics of the job API: requests by route template and status, and latency."""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

from fastapi import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from starlette.types import Message, Receive, Scope, Send

from api.middleware import HttpMiddleware

# Where a middleware that answers a route's requests itself names that route's template.
ROUTE_TEMPLATE = "insight.route_template"
REQUESTS = Counter("insight_api_requests", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram(
    "insight_api_request_duration_seconds", "Time to answer an HTTP request", ["method", "route"]
)


class Measure(HttpMiddleware):
    """Count and time each request under its route template (never the raw path: ids in
    paths would make one time series per job)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:  # a defect too: counted as the 500 the error middleware outside answers
            record(scope["method"], route_template(scope), status, time.perf_counter() - started)


def record(method: str, route: str, status: int, seconds: float) -> None:
    """One answered request, counted and timed (for a middleware that answers a route's
    requests itself, as Measure would have)."""
    key = (method, route, status)
    series = _series.get(key)
    if series is None:  # prometheus_client's labels() takes a lock and builds a key per call
        series = _series[key] = (
            REQUESTS.labels(method, route, str(status)),
            LATENCY.labels(method, route),
        )
    series[0].inc()
    series[1].observe(seconds)


# Bounded: the routes' templates ("unmatched" for any other path) times methods and statuses.
_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def route_template(scope: MutableMapping[str, Any]) -> str:
    """`/api/v1/jobs/{job_id}` for a request to /api/v1/jobs/123: the matched route's path,
    with the prefix of the router it was included through (or the one a middleware that
    answers before routing put under ROUTE_TEMPLATE: `api.routes.publish.BodyLimits`)."""
    served = scope.get(ROUTE_TEMPLATE)
    if isinstance(served, str):
        return served
    path = getattr(scope.get("route"), "path", None)
    if path is None:
        return "unmatched"
    included = (scope.get("fastapi") or {}).get("included_router")
    prefix = getattr(getattr(included, "include_context", None), "prefix", "")
    return f"{prefix}{path}"


async def metrics_endpoint() -> Response:
    """Prometheus metrics of this API process."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
