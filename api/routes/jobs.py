"""GET /jobs/{job_id}: where a submitted job stands; POST /jobs/{job_id}/cancel: stop it
(GET /jobs/{job_id}/events, the job followed live, is `api.routes.job_events`)."""

from __future__ import annotations

import re

from fastapi import APIRouter, HTTPException, status
from sqlalchemy.orm import Session

from api.deps import CurrentUser, SessionDep
from api.schemas import JobOut, refusals
from core.models import Job
from domain import cancel, jobs, outcome

router = APIRouter(tags=["jobs"])

# Job ids are UUIDs; anything else (a NUL, which PostgreSQL refuses, non-ASCII) names no job.
_JOB_ID = re.compile(r"[0-9A-Za-z-]{1,36}")


@router.get(
    "/jobs/{job_id}",
    response_model=JobOut,
    responses=refusals(401, 404, 422),
)
def get_job(job_id: str, user: CurrentUser, session: SessionDep) -> JobOut:
    """Status, result (an order job's holds `order_id`) and error of one of the caller's jobs."""
    return _job_out(own_job(session, job_id, user.user_id))


def _job_out(job: Job) -> JobOut:
    return JobOut(
        job_id=job.id,
        kind=job.kind,
        status=job.status,
        result=job.result,
        error=job.error,
        created_at=job.created_at,
        updated_at=job.updated_at,
    )


def own_job(session: Session, job_id: str, user_id: str) -> Job:
    """The user's job `job_id`; 404 for a malformed id or anyone else's."""
    job = session.get(Job, job_id) if _JOB_ID.fullmatch(job_id) else None
    if job is None or job.user_id != user_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found")
    return job


@router.post(
    "/jobs/{job_id}/cancel",
    status_code=202,
    response_model=JobOut,
    responses=refusals(401, 404, 409, 422),
)
def cancel_job(job_id: str, user: CurrentUser, session: SessionDep) -> JobOut:
    """Ask one of the caller's jobs to stop: it ends `cancelled` unless it already passed its
    point of no return (a payment once Stripe was called), then it ends as it would have."""
    job = own_job(session, job_id, user.user_id)
    if job.parent_id is not None:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"job {job_id} is an order of an import: cancel the import"
        )
    try:
        view = cancel.request(session, job_id)
    except jobs.AlreadyFinished as finished:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, str(finished)) from None
    told = outcome.announce(session, view) if view.finished else None
    session.commit()
    if told is not None:
        outcome.remember(told)
    session.refresh(job)
    return _job_out(job)
