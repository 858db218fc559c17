"""metrics.recalculate (on demand, a job) and metrics.push_all (every minute, by beat)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.db import session_scope
from domain import announcements, cancel, jobs, metrics, outcome
from workers.celery_app import app
from workers.tasks.base import begin, finish, job_task, time_limits


def _compute(session: Session, job: jobs.JobView) -> jobs.JobView:
    if not job.business_id:
        return jobs.fail(session, job.id, "the job names no business")
    figures = metrics.business_metrics(session, job.business_id)
    return jobs.succeed(session, job.id, {"business_id": job.business_id, "metrics": figures})


@job_task("metrics")
def recalculate(job_id: str) -> None:
    job = begin("metrics", job_id, progress=10)
    if job.finished:  # an earlier delivery did the work (or the job was delivered too often)
        finish(job)
        return
    with session_scope() as session:
        job = cancel.checkpoint(session, job_id) or _compute(session, job)
        told = outcome.announce(session, job)  # published when this commits, dropped if not
    outcome.remember(told)


@app.task(name="metrics.push_all", **time_limits("metrics"))
def push_all() -> int:
    """Fresh figures to every business with recent orders; returns how many were pushed."""
    with session_scope() as session:
        figures = {
            b: metrics.business_metrics(session, b) for b in metrics.active_businesses(session)
        }
    for business_id, values in figures.items():
        announcements.push_metrics(business_id, values)
    return len(figures)
