"""orders.create: turn an accepted order request into an order, and tell the user's page."""

from __future__ import annotations

from core.db import session_scope
from workers import announce
from workers.celery_app import app
from workers.reliability import TIME_LIMITS
from workers.services import jobs, orders
from workers.tasks.base import JobTask, begin, finish

LIMIT = TIME_LIMITS["orders"]


@app.task(name="orders.create", base=JobTask, soft_time_limit=LIMIT.soft, time_limit=LIMIT.hard)
def create_order(job_id: str) -> None:
    job = begin(job_id)
    if not job.finished:
        announce.progress(job, 10)
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
    finish(job)
