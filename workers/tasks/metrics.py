"""metrics.recalculate (on demand, a job) and metrics.push_all (every minute, by beat)."""

from __future__ import annotations

from core.db import session_scope
from domain import announcements, jobs, metrics
from workers.celery_app import app
from workers.tasks.base import (
    announce_outcome,
    begin,
    finish,
    job_task,
    remember_notified,
    time_limits,
)


@job_task("metrics")
def recalculate(job_id: str) -> None:
    job = begin(job_id)
    if not job.finished:
        with session_scope() as session:
            if job.business_id:
                figures = metrics.business_metrics(session, job.business_id)
                job = jobs.succeed(
                    session, job_id, {"business_id": job.business_id, "metrics": figures}
                )
            else:
                job = jobs.fail(session, job_id, "the job names no business")
            announce_outcome(session, job)  # published when this commits, dropped if not
        remember_notified(job)
    else:  # an earlier delivery did the work (or the job was delivered too often)
        finish(job)


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
