"""A job's lifecycle: begin a delivery, finish, remember publication.

Every delivery of a task message (first run, retry or redelivery after a crash) starts with
`begin`, which counts it and tells the task whether there is still work to do, so the task is
idempotent by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Job

# The kinds of job the API accepts (each is a row of domain/registry.py) and where a job stands.
JobKind = Literal["order", "payment", "metrics"]
JobStatus = Literal["queued", "running", "succeeded", "failed"]
FINISHED: tuple[JobStatus, ...] = ("succeeded", "failed")

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
            job.client,
        )


def _locked(session: Session, job_id: str) -> Job:
    job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).one_or_none()
    if job is None:
        raise UnknownJob(job_id)
    return job


def begin(session: Session, job_id: str) -> JobView:
    """Count this delivery; mark the job running, or failed if it was delivered too often."""
    job = _locked(session, job_id)
    job.deliveries += 1
    if job.status not in FINISHED:
        if job.deliveries > MAX_DELIVERIES:
            job.status = "failed"
            job.error = f"gave up after {MAX_DELIVERIES} attempts"
        else:
            job.status = "running"
    return JobView.of(job)


def succeed(session: Session, job_id: str, result: dict[str, Any]) -> JobView:
    job = _locked(session, job_id)
    if job.status != "failed":
        job.status, job.result, job.error = "succeeded", result, None
    return JobView.of(job)


def fail(
    session: Session, job_id: str, reason: str, result: dict[str, Any] | None = None
) -> JobView:
    job = _locked(session, job_id)
    if job.status != "succeeded":
        job.status, job.error = "failed", reason
        if result is not None:
            job.result = result
    return JobView.of(job)


def mark_notified(session: Session, job_id: str) -> None:
    _locked(session, job_id).notified = True
