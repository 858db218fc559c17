"""orders.create: turn an accepted order request into an order, and tell the user's page."""

from __future__ import annotations

from core.db import session_scope
from workers.celery_app import app
from workers.reliability import TIME_LIMITS
from workers.services import jobs, orders
from workers.tasks.base import JobTask, announce_outcome, begin, finish, remember_notified

LIMIT = TIME_LIMITS["orders"]


@app.task(name="orders.create", base=JobTask, soft_time_limit=LIMIT.soft, time_limit=LIMIT.hard)
def create_order(job_id: str) -> None:
    job = begin(job_id, progress=10)
    if not job.finished:
        with session_scope() as session:
            order = orders.create_order(session, job_id)
            job = jobs.succeed(
                session,
                job_id,
                {
                    "order_id": str(order.id),
                    "total_amount": order.total_amount,
                    "currency": order.currency,
                },
            )
            announce_outcome(session, job)  # published when this commits, dropped if not
        remember_notified(job)
    else:  # an earlier delivery did the work (or the job was delivered too often)
        finish(job)
