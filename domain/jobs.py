"""A job's lifecycle: begin a delivery, finish, remember publication.

Every delivery of a task message (first run, retry or redelivery after a crash) starts with
`begin`, which counts it, gives it a deadline and tells the task whether there is still work to
do, so the task is idempotent by construction. A finished job stays as it finished: whichever
of the worker, a cancel or the sweep of lost jobs ends it first, the others find it finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from core.models import Job, utcnow
from realtime.payloads import JobStatus as JobStatus  # where a job stands, as its job_progress says

# The kinds of job the API accepts (each is a row of domain/registry.py).
JobKind = Literal["order", "payment", "metrics", "import"]
FINISHED: tuple[JobStatus, ...] = ("succeeded", "failed", "cancelled")
UNFINISHED: tuple[JobStatus, ...] = ("queued", "running")

# Deliveries of one job, retries and redeliveries together, after which it is failed for good:
# a message that kills its worker every time must not loop forever.
MAX_DELIVERIES = 12


class UnknownJob(LookupError):
    """The message names a job the database does not have (never retried)."""


@dataclass(frozen=True)
class JobView:
    """What a task needs to know of a job once its session is closed."""

    id: str
    kind: JobKind
    user_id: str
    business_id: str | None
    status: JobStatus
    request: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    notified: bool
    correlation_id: str | None
    attempt: int = 1  # the delivery this is: 2 and more after a retry or a redelivery
    parent_id: str | None = None  # the batch this job is an order of
    started_at: datetime | None = None
    client: str | None = None  # the browser tab that submitted it, if it said

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @classmethod
    def of(cls, job: Job) -> JobView:
        return cls(
            job.id,
            cast(JobKind, job.kind),  # written by the API from JobKind, read back as text
            job.user_id,
            job.business_id,
            cast(JobStatus, job.status),
            dict(job.request),
            dict(job.result) if job.result is not None else None,
            job.error,
            job.notified,
            job.correlation_id,
            max(job.deliveries, 1),
            job.parent_id,
            job.started_at,
            job.client,
        )


# FOR NO KEY UPDATE, not FOR UPDATE: a job's id never changes, and on PostgreSQL an order of an
# import updated twice in one transaction holds FOR KEY SHARE on its batch's row (the foreign
# key's check), which FOR UPDATE would wait for: two orders counting their batch at once
# deadlocked. populate_existing: a job the session loaded earlier, unlocked (a cancel's owner
# check, a batch's `stopping`), is read again as the lock finds it, not kept as it was. One
# statement, made once: SQLAlchemy memoizes its cache key on the object, and building it anew
# for each of a job's four locks was a third of an order task's CPU.
_LOCK_JOB = (
    select(Job)
    .where(Job.id == bindparam("job_id"))
    .with_for_update(key_share=True)
    .execution_options(populate_existing=True)
)


def _locked(session: Session, job_id: str) -> Job:
    """The job's row, locked until the transaction ends, as it is now."""
    job = session.scalars(_LOCK_JOB, {"job_id": job_id}).one_or_none()
    if job is None:
        raise UnknownJob(job_id)
    return job


def begin(session: Session, job_id: str, seconds: float) -> JobView:
    """Count this delivery, which must end within `seconds`; mark the job running, or failed if
    it was delivered too often."""
    job = _locked(session, job_id)
    job.deliveries += 1
    if job.status not in FINISHED:
        if job.deliveries > MAX_DELIVERIES:
            job.status = "failed"
            job.error = f"gave up after {MAX_DELIVERIES} attempts"
        else:
            job.status = "running"
            job.started_at = job.started_at or utcnow()
            job.deadline_at = utcnow() + timedelta(seconds=seconds)
    return JobView.of(job)


def extend(session: Session, job_id: str, seconds: float) -> None:
    """The job is still moving (a retry is scheduled, a batch's order finished): it has
    `seconds` more before the sweep may call it lost."""
    _locked(session, job_id).deadline_at = utcnow() + timedelta(seconds=seconds)


def succeed(session: Session, job_id: str, result: dict[str, Any]) -> JobView:
    job = _locked(session, job_id)
    if job.status in UNFINISHED:
        job.status, job.result, job.error = "succeeded", result, None
    return JobView.of(job)


def fail(
    session: Session, job_id: str, reason: str, result: dict[str, Any] | None = None
) -> JobView:
    job = _locked(session, job_id)
    if job.status in UNFINISHED:
        job.status, job.error = "failed", reason
        if result is not None:
            job.result = result
    return JobView.of(job)


def cancel(session: Session, job_id: str, result: dict[str, Any] | None = None) -> JobView:
    """End an unfinished job as cancelled (a finished one stays as it is)."""
    job = _locked(session, job_id)
    if job.status in UNFINISHED:
        job.status = "cancelled"
        if result is not None:
            job.result = result
    return JobView.of(job)


class AlreadyFinished(Exception):
    """A cancel of a job that has finished: there is nothing left to stop."""


def request_cancel(session: Session, job_id: str) -> JobView:
    """Ask the job to stop: a queued job is cancelled at once (its message finds it finished),
    a running one at its next checkpoint (`point_of_no_return`); raises AlreadyFinished."""
    job = _locked(session, job_id)
    if job.status in FINISHED:
        raise AlreadyFinished(f"job {job_id} has already {job.status}")
    job.cancel_requested_at = job.cancel_requested_at or utcnow()
    if job.status == "queued":
        job.status = "cancelled"
    return JobView.of(job)


def point_of_no_return(session: Session, job_id: str) -> JobView | None:
    """Settle a cancel against the job's point of no return, in the caller's transaction,
    which does the irrevocable step: the cancelled job if a cancel came first (the step must
    not be taken), else None, and from then on a cancel lets the job end as it would."""
    job = _locked(session, job_id)
    if job.cancel_requested_at is not None and not job.irrevocable:
        return cancel(session, job_id)
    job.irrevocable = True
    return None


def mark_notified(session: Session, job_id: str) -> None:
    _locked(session, job_id).notified = True
