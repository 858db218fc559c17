"""Prometheus metrics of the job API: requests by route template and status, and latency."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest

REQUESTS = Counter("insight_api_requests", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram(
    "insight_api_request_duration_seconds", "Time to answer an HTTP request", ["method", "route"]
)


async def measure(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Count and time each request under its route template (never the raw path: ids in
    paths would make one time series per job)."""
    started = time.perf_counter()
    response = await call_next(request)
    route = route_template(request.scope)
    REQUESTS.labels(request.method, route, str(response.status_code)).inc()
    LATENCY.labels(request.method, route).observe(time.perf_counter() - started)
    return response


def route_template(scope: MutableMapping[str, Any]) -> str:
    """`/api/v1/jobs/{job_id}` for a request to /api/v1/jobs/123: the matched route's path,
    with the prefix of the router it was included through."""
    path = getattr(scope.get("route"), "path", None)
    if path is None:
        return "unmatched"
    included = (scope.get("fastapi") or {}).get("included_router")
    prefix = getattr(getattr(included, "include_context", None), "prefix", "")
    return f"{prefix}{path}"


async def metrics_endpoint() -> Response:
    """Prometheus metrics of this API process."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
