"""Telling the page how a job ended, once: the announcement waits for the commit of the
transaction that ended the job, and is remembered (`notified`) only after it went out.

An order of an import is never announced on its own: it counts towards its batch, whose
progress and end are announced instead (domain/batch.py).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.db import session_scope
from domain import batch, jobs
from domain.jobs import JobView
from domain.registry import JOB_TYPES


def announce(session: Session, job: JobView) -> JobView:
    """Tell the page how `job` ended once `session`, which ended it, commits (nothing if it
    rolls back), unless an earlier delivery already did; returns the job this announced (its
    batch, for an order of one), for `remember`.

    The notified mark cannot share that transaction: if the publish after the commit failed,
    a retry would find the job notified and never announce it."""
    if job.parent_id is not None:
        return batch.report(session, job.parent_id)
    if not job.notified:
        JOB_TYPES[job.kind].announce(job, after_commit=session)
    return job


def remember(job: JobView) -> None:
    """After the announcement went out: later deliveries of the job do not announce it again."""
    if not job.notified and job.finished:
        with session_scope() as session:
            jobs.mark_notified(session, job.id)
