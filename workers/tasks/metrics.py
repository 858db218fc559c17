"""metrics.recalculate (on demand, a job) and metrics.push_all (every minute, by beat)."""

from __future__ import annotations

from core.db import session_scope
from workers import announce
from workers.celery_app import app
from workers.reliability import TIME_LIMITS
from workers.services import jobs, metrics
from workers.tasks.base import JobTask, announce_outcome, remember_notified

LIMIT = TIME_LIMITS["metrics"]


@app.task(
    name="metrics.recalculate", base=JobTask, soft_time_limit=LIMIT.soft, time_limit=LIMIT.hard
)
def recalculate(job_id: str) -> None:
    with session_scope() as session:
        job = jobs.begin(session, job_id)
        figures = metrics.business_metrics(session, job.business_id) if job.business_id else None
        if not job.finished and figures is not None:
            job = jobs.succeed(
                session, job_id, {"business_id": job.business_id, "metrics": figures}
            )
        elif not job.finished:
            job = jobs.fail(session, job_id, "the job names no business")
        announce_outcome(session, job, figures)  # published when this commits, dropped if not
    remember_notified(job)


@app.task(name="metrics.push_all", soft_time_limit=LIMIT.soft, time_limit=LIMIT.hard)
def push_all() -> int:
    """Fresh figures to every business with recent orders; returns how many were pushed."""
    with session_scope() as session:
        figures = {
            b: metrics.business_metrics(session, b) for b in metrics.active_businesses(session)
        }
    for business_id, values in figures.items():
        announce.push_metrics(business_id, values)
    return len(figures)
