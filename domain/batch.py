"""An import: one job whose orders are jobs of their own, created in parallel by the orders
workers (a Celery group), each at most once.

There is no coordinator to lose: whichever order finishes counts the batch under the batch's
row lock (`report`), publishes its progress and, when it was the last, ends the batch and
announces it. An order that fails, is cancelled or is lost still counts, so the batch always
ends. A cancel of the batch ends the orders that have not started (`stop`), and an order
whose message a worker took meanwhile does not start (`stopping`).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.models import Job, utcnow
from domain import announcements, jobs
from domain.jobs import FINISHED, UNFINISHED, JobStatus, JobView
from domain.registry import JOB_TYPES

# Each order finished gives the batch this long again before the sweep calls it lost.
ORDER_SECONDS = JOB_TYPES["order"].limits.hard


def order_id(batch_id: str, index: int) -> str:
    """The job id of the batch's `index`th order: the same on every delivery of the batch."""
    return str(uuid.uuid5(uuid.UUID(batch_id), str(index)))


def add_orders(session: Session, batch: JobView) -> list[str]:
    """The batch's orders as jobs (made once, by the first delivery); the ids of those that
    have not finished, to be sent to the orders workers. None for a batch already stopping
    (cancelled before its orders were made)."""
    if stopping(session, batch.id):
        return []
    made = session.scalars(select(Job).where(Job.parent_id == batch.id)).all()
    if not made:
        made = [_order_job(batch, i, body) for i, body in enumerate(batch.request["orders"])]
        session.add_all(made)
    return [job.id for job in made if job.status in UNFINISHED]


def _order_job(batch: JobView, index: int, body: dict[str, Any]) -> Job:
    return Job(
        id=order_id(batch.id, index),
        kind="order",
        parent_id=batch.id,
        user_id=batch.user_id,
        business_id=batch.business_id,
        status="queued",
        request=body,
        request_hash=hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest(),
        correlation_id=batch.correlation_id,
        deliveries=0,
        notified=False,
    )


def stopping(session: Session, batch_id: str) -> bool:
    """Whether an order of the batch that has not started must not start: the batch was
    asked to stop, or has ended already (cancelled or lost)."""
    batch = session.get(Job, batch_id)
    return batch is None or batch.cancel_requested_at is not None or batch.status in FINISHED


def counts(session: Session, batch_id: str) -> dict[str, int]:
    """How many of the batch's orders stand at each status."""
    rows = session.execute(
        select(Job.status, func.count()).where(Job.parent_id == batch_id).group_by(Job.status)
    ).all()
    return {status: int(n) for status, n in rows}


def report(session: Session, batch_id: str) -> JobView:
    """An order of the batch finished (in `session`): count the batch, publish its progress
    once `session` commits, and end and announce it if that was the last. Returns the batch."""
    jobs.extend(session, batch_id, ORDER_SECONDS)  # its row lock: one count at a time
    batch = JobView.of(_job(session, batch_id))
    if batch.finished:  # ended by an earlier count, a cancel or the sweep
        if not batch.notified:
            JOB_TYPES["import"].announce(batch, after_commit=session)
        return batch
    by_status = counts(session, batch_id)
    total = sum(by_status.values())
    done = sum(by_status.get(status, 0) for status in FINISHED)
    if done < total:
        percent = done * 100 // total
        if percent != (done - 1) * 100 // total:  # about a hundred updates, not a thousand
            announcements.progress(
                batch,
                percent,
                done=done,
                total=total,
                eta_seconds=_eta(batch, done, total),
                after_commit=session,
            )
        return batch
    result = result_of(by_status)
    if _job(session, batch_id).cancel_requested_at is not None:
        batch = jobs.cancel(session, batch_id, result)
    elif result is None or result["created"]:
        batch = jobs.succeed(session, batch_id, result or {})
    else:
        batch = jobs.fail(session, batch_id, "no order could be created", result)
    JOB_TYPES["import"].announce(batch, after_commit=session)
    return batch


def result_of(by_status: dict[str, int]) -> dict[str, int] | None:
    """A batch's result from its orders' statuses (`counts`); None for a job with no orders."""
    if not by_status:
        return None
    return {
        "total": sum(by_status.values()),
        "created": by_status.get("succeeded", 0),
        "failed": by_status.get("failed", 0),
        "cancelled": by_status.get("cancelled", 0),
    }


def end_orders(
    session: Session,
    batch_id: str,
    status: str,
    reason: str | None,
    unfinished: tuple[JobStatus, ...] = UNFINISHED,
) -> None:
    """The batch ended without them (cancelled, lost): its `unfinished` orders end too."""
    session.execute(
        update(Job)
        .where(Job.parent_id == batch_id, Job.status.in_(unfinished))
        .values(status=status, error=reason)
    )


def stop(session: Session, batch_id: str) -> JobView:
    """The owner cancelled the batch (raises jobs.AlreadyFinished): its orders that have not
    started end cancelled now, rather than one by one as the workers reach their messages
    (which then find them finished), and the batch ends with them.

    The orders' rows are locked before the batch's, in the order an order being made takes
    them (its own row, then its batch's to count it), so neither waits for the other (on
    PostgreSQL that was a deadlock); an order being made meanwhile is waited for, and counted."""
    end_orders(session, batch_id, "cancelled", None, unfinished=("queued",))
    job = jobs.request_cancel(session, batch_id)
    by_status = counts(session, batch_id)
    if job.finished or any(by_status.get(status) for status in UNFINISHED):
        return job
    return jobs.cancel(session, batch_id, result_of(by_status))


def _job(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    assert job is not None
    return job


def _eta(batch: JobView, done: int, total: int) -> int | None:
    if batch.started_at is None or not done:
        return None
    started = batch.started_at if batch.started_at.tzinfo else batch.started_at.replace(tzinfo=UTC)
    elapsed = (utcnow() - started).total_seconds()
    return round(elapsed / done * (total - done))
