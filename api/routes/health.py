"""/healthz (the process answers) and /readyz (Redis and the database answer)."""

from __future__ import annotations

import asyncio
import contextlib

import redis
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from core.config import READY_CHECK_SECONDS
from core.db import get_engine

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


def _database_answers() -> bool:
    with contextlib.suppress(SQLAlchemyError), get_engine().connect() as connection:
        connection.execute(text("SELECT 1"))
        return True
    return False


@router.get(
    "/readyz",
    response_model=None,
    responses={503: {"description": "Redis or the database does not answer (same body)"}},
)
async def readyz(request: Request) -> JSONResponse:
    """Ready to accept jobs: Redis (the queue and the events) and the database answer."""
    checks = {"redis": False, "database": False}
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(READY_CHECK_SECONDS):
            checks["database"] = await run_in_threadpool(_database_answers)
    with contextlib.suppress(redis.RedisError, OSError, TimeoutError):
        async with asyncio.timeout(READY_CHECK_SECONDS):
            checks["redis"] = bool(await request.app.state.redis.ping())
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )
