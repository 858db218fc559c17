"""No job left hanging: the sweep that ends the jobs nothing else will.

A job is lost when its deadline (set at each delivery from its hard time limit, pushed back by
a scheduled retry or by each order of a batch that finishes) passed more than LOST_GRACE
ago: its worker died and the message was not redelivered, or it outlived its time limits. It
ends `failed` with the error "lost", announced like any failure. A job asked to cancel that
did not stop by itself within the cancel grace, and had not passed its point of no return,
ends `cancelled` (its message is revoked by the caller, workers/sweeper.py).

Safe against a late worker: a finished job stays finished (domain/jobs.py), and a redelivered
message finds it finished and announced.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from core.db import session_scope
from core.models import Job
from domain import batch, cancel, jobs, outcome
from domain.jobs import JobView
from domain.reliability import VISIBILITY_TIMEOUT

# After a job's deadline: time for Celery's own hard time limit to kill the run and the broker
# to redeliver it, which the sweep must not pre-empt.
LOST_GRACE_SECONDS = 15
LOST = "lost"


def lost(session: Session, now: datetime) -> list[str]:
    """The jobs (not the orders of a batch, which count towards it) past deadline and grace;
    a queued one, once its message would have been redelivered had a worker taken it."""
    rows = session.scalars(
        select(Job.id).where(
            Job.parent_id.is_(None),
            or_(
                (Job.status == "running")
                & (Job.deadline_at < now - timedelta(seconds=LOST_GRACE_SECONDS)),
                (Job.status == "queued")
                & (Job.created_at < now - timedelta(seconds=VISIBILITY_TIMEOUT)),
            ),
        )
    )
    return list(rows)


def overdue_cancels(session: Session, now: datetime) -> list[str]:
    """Running jobs asked to cancel more than the grace ago, before their point of no return."""
    rows = session.scalars(
        select(Job.id).where(
            Job.parent_id.is_(None),
            Job.status == "running",
            Job.irrevocable.is_(False),
            Job.cancel_requested_at < now - timedelta(seconds=cancel.GRACE_SECONDS),
        )
    )
    return list(rows)


def end_lost(job_id: str) -> JobView:
    """Fail a lost job (a batch with its unfinished orders) and announce it."""
    with session_scope() as session:
        batch.end_orders(session, job_id, "failed", LOST)
        job = jobs.fail(session, job_id, LOST, batch.result_of(batch.counts(session, job_id)))
        told = outcome.announce(session, job)
    outcome.remember(told)
    return job


def end_cancelled(job_id: str) -> JobView:
    """Cancel a job that did not stop by itself (a batch with its unfinished orders)."""
    with session_scope() as session:
        batch.end_orders(session, job_id, "cancelled", None)
        job = cancel.force(session, job_id, batch.result_of(batch.counts(session, job_id)))
        told = outcome.announce(session, job)
    outcome.remember(told)
    return job


def sweep(now: datetime) -> tuple[list[JobView], list[JobView]]:
    """End every lost job and every overdue cancel; returns (lost, cancelled) as ended."""
    with session_scope() as session:
        lost_ids, cancel_ids = lost(session, now), overdue_cancels(session, now)
    return [end_lost(i) for i in lost_ids], [end_cancelled(i) for i in cancel_ids]
