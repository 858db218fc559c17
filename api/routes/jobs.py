"""GET /jobs/{job_id}: where a submitted job stands."""

from __future__ import annotations

import re

from fastapi import APIRouter, HTTPException, status

from api.deps import CurrentUser, SessionDep
from api.schemas import JobOut, refusals
from core.models import Job

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
    job = session.get(Job, job_id) if _JOB_ID.fullmatch(job_id) else None
    if job is None or job.user_id != user.user_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found")
    return JobOut(
        job_id=job.id,
        kind=job.kind,
        status=job.status,
        result=job.result,
        error=job.error,
        created_at=job.created_at,
        updated_at=job.updated_at,
    )
