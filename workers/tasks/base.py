"""What every job task shares: retries of transient errors, and a failed job (announced to
the user) when a task gives up, instead of a job left "running" forever."""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import Task
from sqlalchemy.exc import OperationalError

from core.db import session_scope
from workers import announce, reliability
from workers.services import jobs
from workers.services.payments import TransientPaymentError

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
                job = jobs.fail(session, job_id, f"internal error: {type(exc).__name__}")
            finish(job)
        except Exception:
            logger.exception("could not record the failure", extra={"job_id": job_id})


def finish(job: jobs.JobView, metrics: dict[str, Any] | None = None) -> None:
    """Announce a finished job unless an earlier delivery already did, then remember it."""
    if job.notified:
        return
    announce.outcome(job, metrics)
    with session_scope() as session:
        jobs.mark_notified(session, job.id)
