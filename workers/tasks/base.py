"""What every job task shares: its name and time limits from the registry, retries of transient
errors (each pushing the job's deadline back by its countdown), a failed job (announced to the
user) when a task gives up, and the cancel checkpoint between its steps."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError

from core.db import session_scope
from domain import announcements, jobs, outcome, reliability
from domain.jobs import JobKind
from domain.payments import TransientPaymentError
from domain.registry import JOB_TYPES
from workers.celery_app import app

logger = logging.getLogger(__name__)

# Errors that a later attempt may not meet: a database or Redis blip, Stripe unavailable.
TRANSIENT_ERRORS = (
    OperationalError,
    redis.ConnectionError,
    redis.TimeoutError,
    TransientPaymentError,
)


class JobTask(Task):  # type: ignore[misc]
    """Base of tasks whose first argument is a job id."""

    abstract = True
    autoretry_for = TRANSIENT_ERRORS
    retry_backoff = True
    retry_backoff_max = reliability.RETRY_BACKOFF_MAX
    retry_jitter = True
    max_retries = reliability.MAX_RETRIES

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        job_id = args[0] if args else kwargs.get("job_id")
        if job_id is None:
            return
        logger.error("job failed", extra={"job_id": job_id, "task_id": task_id, "error": repr(exc)})
        try:
            with session_scope() as session:
                told = outcome.announce(session, jobs.fail(session, job_id, human_reason(exc)))
            outcome.remember(told)
        except Exception:
            logger.exception("could not record the failure", extra={"job_id": job_id})

    def retry(self, *args: Any, countdown: float | None = None, **kwargs: Any) -> Any:
        """A retry waits out its countdown before it runs again: the job's deadline moves."""
        job_id = self.request.args[0] if self.request.args else None
        if job_id is not None and countdown is not None:
            with session_scope() as session:
                jobs.extend(session, job_id, countdown + (self.time_limit or 0))
        return super().retry(*args, countdown=countdown, **kwargs)


def time_limits(kind: JobKind) -> dict[str, int]:
    """Celery's time limit options for the tasks on `kind`'s queue."""
    limits = JOB_TYPES[kind].limits
    return {"soft_time_limit": limits.soft, "time_limit": limits.hard}


def job_task(kind: JobKind) -> Callable[[Callable[[str], None]], JobTask]:
    """The decorator that registers `kind`'s task, under the name the API sends it by."""
    register: Callable[[Callable[[str], None]], JobTask] = app.task(
        name=JOB_TYPES[kind].task, base=JobTask, **time_limits(kind)
    )
    return register


def human_reason(error: BaseException) -> str:
    """What the user is told when a job gives up (the details go to the log, not the page)."""
    if isinstance(error, SoftTimeLimitExceeded):
        return "it took too long; please try again"
    if isinstance(error, OperationalError):
        return "our database was unavailable; please try again in a minute"
    if isinstance(error, redis.RedisError):
        return "our queue was unavailable; please try again in a minute"
    if isinstance(error, TransientPaymentError):
        return "the payment provider was unavailable; you were not charged twice, try again"
    if isinstance(error, jobs.UnknownJob):
        return "the job was not found"
    return "something went wrong on our side; please try again"


def begin(kind: JobKind, job_id: str, progress: int | None = None) -> jobs.JobView:
    """Count this delivery of the job (committed) within `kind`'s hard time limit; the view says
    whether work remains. With `progress`, a job with work left shows that percentage once the
    count is committed."""
    with session_scope() as session:
        job = jobs.begin(session, job_id, JOB_TYPES[kind].limits.hard)
        if progress is not None and not job.finished:
            announcements.progress(job, progress, after_commit=session)
    return job


def finish(job: jobs.JobView) -> None:
    """Announce a job finished by an earlier, committed transaction unless an earlier delivery
    already did, then remember it."""
    if job.notified:
        return
    if job.parent_id is None:
        JOB_TYPES[job.kind].announce(job)
        outcome.remember(job)
        return
    with session_scope() as session:  # an order of a batch counts towards its batch
        told = outcome.announce(session, job)
    outcome.remember(told)
