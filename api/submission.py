"""Accepting a job: one row committed, then one message enqueued, answered with 202.

The order matters: the worker may pick the message up at once, so the rows it will load must
already be committed. An Idempotency-Key makes a repeated submission return the first job;
the same key with a different body is refused rather than silently answered with a job that
does something else.

Concurrent submissions are settled by the database's unique constraints (the first commit
wins), and a refused commit is answered for what it was: a repeat of an Idempotency-Key gets
the first job; a job whose rows break a rule that a concurrent job's rows now hold (one
payment per order, known by the constraint the database names) gets a 409 naming the
conflict; anything else stays an error.

The message goes by task name through a producer of our own: the API imports no worker code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from celery import Celery
from fastapi import HTTPException, status
from fastapi.responses import JSONResponse
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.config import get_settings
from core.models import Job
from core.security import Identity
from domain import reliability
from domain.jobs import JobKind
from domain.registry import JOB_TYPES

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def producer() -> Celery:
    """A Celery app that only sends, configured as the workers are."""
    settings = get_settings()
    app = Celery("insight")
    app.conf.update(reliability.celery_settings(settings.broker_url, settings.result_backend))
    return app


def submit(
    session: Session,
    user: Identity,
    kind: JobKind,
    body: dict[str, Any],
    idempotency_key: str | None,
    correlation_id: str | None,
    *,
    business_id: str | None = None,
    client: str | None = None,
    add_rows: Callable[[Job], None] | None = None,
    conflict: Callable[[IntegrityError], Exception | None] | None = None,
) -> Job:
    """Store and enqueue a job (or find the one this Idempotency-Key already made).

    `client` is the browser tab that submits it (`Insight-Client`), where its redirect and
    modal go. `add_rows` runs only when a new job is made: it adds the rows the job refers
    to, and may refuse the job by raising (nothing is committed then). `conflict` names the
    conflict that a refused write of those rows was, when a concurrent job's rows came first
    (answered 409); None for anything else, which stays an error.
    """
    fingerprint = hashlib.sha256(
        json.dumps({"kind": kind, "body": body}, sort_keys=True).encode()
    ).hexdigest()
    if idempotency_key is not None:
        earlier = _earlier(session, user.user_id, idempotency_key, fingerprint)
        if earlier is not None:
            return earlier
    job = Job(
        id=str(uuid.uuid4()),
        kind=kind,
        user_id=user.user_id,
        business_id=business_id if business_id is not None else user.business_id,
        status="queued",
        request=body,
        request_hash=fingerprint,
        idempotency_key=idempotency_key,
        correlation_id=correlation_id,
        client=client,
        deliveries=0,
        notified=False,
    )
    session.add(job)
    try:
        if add_rows is not None:
            add_rows(job)  # its queries flush the job: a refused write may show here already
        session.commit()
    except IntegrityError as error:
        session.rollback()
        if idempotency_key is not None:
            # A concurrent request with the same key won the race: answer with its job.
            earlier = _earlier(session, user.user_id, idempotency_key, fingerprint)
            if earlier is not None:
                return earlier
        lost = conflict(error) if conflict is not None else None
        if lost is None:
            raise
        raise HTTPException(status.HTTP_409_CONFLICT, str(lost)) from None
    job_type = JOB_TYPES[kind]
    try:
        producer().send_task(
            job_type.task,
            args=[job.id],
            task_id=job.id,  # a cancel that outlives its grace revokes the message by it
            queue=job_type.queue,
            headers={"request_id": correlation_id},
            # No Celery result is kept (the job's state is its row). Without this, send_task
            # subscribes to the task's result channel on the result backend, and the result's
            # garbage collection unsubscribes: two round trips per job for nothing.
            ignore_result=True,
        )
    except Exception as error:
        logger.error("could not enqueue", extra={"job_id": job.id, "error": repr(error)})
        if job_type.cleanup is not None:
            job_type.cleanup(session, job.id)
        session.execute(delete(Job).where(Job.id == job.id))
        session.commit()
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "the job queue is unavailable; try again"
        ) from error
    logger.info("job accepted", extra={"job_id": job.id, "kind": kind, "user_id": user.user_id})
    return job


def _earlier(session: Session, user_id: str, key: str, fingerprint: str) -> Job | None:
    job = session.scalars(
        select(Job).where(Job.user_id == user_id, Job.idempotency_key == key)
    ).one_or_none()
    if job is not None and job.request_hash != fingerprint:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "Idempotency-Key was already used with a different request body",
        )
    return job


def accepted(job: Job) -> JSONResponse:
    """The 202 answer, with Location pointing at the job's status."""
    url = f"/api/v1/jobs/{job.id}"
    return JSONResponse(
        {"job_id": job.id, "status": job.status, "status_url": url},
        status_code=status.HTTP_202_ACCEPTED,
        headers={"Location": url},
    )
