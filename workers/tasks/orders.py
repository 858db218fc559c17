"""orders.create: turn an accepted order request into an order, and tell the user's page."""

from __future__ import annotations

from core.db import session_scope
from domain import jobs, orders
from workers.tasks.base import announce_outcome, begin, finish, job_task, remember_notified


@job_task("order")
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
