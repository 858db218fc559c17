"""Cancelling a job: asked for by its owner, settled by the job itself at its checkpoints,
forced by the sweep when the job did not stop within the grace.

Cooperative first: a task checks between its steps, and its point of no return is the commit
that takes the irrevocable step (`jobs.point_of_no_return`), so a cancel either comes before
it (the step is not taken) or after (the job ends as it would have). Whatever a job held is
let go of when it ends cancelled (the registry's `release`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.models import Job
from domain import batch, jobs
from domain.jobs import JobView
from domain.registry import JOB_TYPES

# How long a running job has to stop by itself before the sweep ends it and revokes its message.
GRACE_SECONDS = 10


def _released(session: Session, job: JobView) -> JobView:
    release = JOB_TYPES[job.kind].release
    if job.status == "cancelled" and release is not None:
        release(session, job.id)
    return job


def request(session: Session, job_id: str) -> JobView:
    """The owner's cancel (raises jobs.AlreadyFinished): a queued job ends now, a running one
    at its next checkpoint, an import now with its orders not yet made (`batch.stop`)."""
    found = session.get(Job, job_id)
    is_import = found is not None and found.kind == "import"
    job = batch.stop(session, job_id) if is_import else jobs.request_cancel(session, job_id)
    return _released(session, job)


def checkpoint(session: Session, job_id: str) -> JobView | None:
    """Between a task's steps, in the transaction of the step that cannot be undone: the
    cancelled job if a cancel came first, else None (go on; a cancel no longer applies)."""
    cancelled = jobs.point_of_no_return(session, job_id)
    return None if cancelled is None else _released(session, cancelled)


def force(session: Session, job_id: str, result: dict[str, Any] | None = None) -> JobView:
    """The grace is over: the job ends cancelled, whatever its task is doing."""
    return _released(session, jobs.cancel(session, job_id, result))
