"""GET /jobs/{job_id}/events: the owner follows one job as Server-Sent Events (how the stream
is read and when it ends: `api.job_stream`)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Request, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentUser
from api.job_stream import Doorbells, JobFeed, job_events, resume_position
from api.routes.jobs import own_job
from api.schemas import refusals
from core.config import Settings
from core.db import session_scope
from core.models import Job
from domain.jobs import FINISHED
from realtime import sse
from realtime.broker.redis_broker import RedisBroker

router = APIRouter(tags=["jobs"])

_feed_lock = asyncio.Lock()

# One message of the stream, as an SSE client reads it: `data` is a frame's JSON, `id` its event
# id (a keep-alive comment is no message).
_EVENT_SCHEMA = {
    "type": "object",
    "properties": {
        "data": {"type": "string", "contentMediaType": "application/json"},
        "id": {"type": "string"},
    },
    "required": ["data"],
}


async def job_feed(request: Request) -> JobFeed:
    """The process's broker for job streams, connected by the first stream (a process that
    serves none never subscribes to anything); closed with the app (`api.main`)."""
    state = request.app.state
    async with _feed_lock:
        if getattr(state, "job_feed", None) is None:
            settings: Settings = state.settings
            broker = await RedisBroker.connect(
                settings.events_url,
                settings.retention,
                wait_for_pool=settings.ws_subscribe_timeout_seconds,
                pubsub_ping_interval=settings.pubsub_ping_interval_seconds,
            )
            doorbells = Doorbells()
            broker.live.start(doorbells)
            state.job_broker = broker
            state.job_feed = JobFeed(broker.log, broker.live, doorbells)
    feed: JobFeed = state.job_feed
    return feed


def _check_owner(job_id: str, user_id: str) -> None:
    """404 unless `job_id` is the user's (read in a session of its own: the stream that
    follows must not hold a database connection for as long as it lasts)."""
    with session_scope() as session:
        own_job(session, job_id, user_id)


def _announced(job_id: str) -> bool:
    with session_scope() as session:
        job = session.get(Job, job_id)
        return job is None or (job.notified and job.status in FINISHED)


@router.get(
    "/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {sse.MEDIA_TYPE: {"schema": _EVENT_SCHEMA}},
            "description": "The job's events as Server-Sent Events: `data:` a frame, `id:` "
            "its event id (send it back as Last-Event-ID to resume). Ends after the job's end.",
        },
        **refusals(400, 401, 404, 422),
    },
)
async def follow_job(
    job_id: str,
    user: CurrentUser,
    request: Request,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """One of the caller's jobs, followed: its events from its first (or after
    Last-Event-ID), live, until it has ended."""
    try:
        after = resume_position(last_event_id)
    except sse.BadResume as refused:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(refused)) from None
    await run_in_threadpool(_check_owner, job_id, user.user_id)
    feed = await job_feed(request)

    async def announced() -> bool:
        return await run_in_threadpool(_announced, job_id)

    return StreamingResponse(
        job_events(feed, user.user_id, job_id, after, announced),
        media_type=sse.MEDIA_TYPE,
        headers={
            name.decode(): value.decode()
            for name, value in sse.STREAM_HEADERS
            if name != b"content-type"  # media_type says it
        },
    )
