"""orders.create: turn an accepted order request into an order, and tell the user's page.
orders.import and orders.import_one: an import's orders, created in parallel (a Celery group).

Each one's point of no return is the commit that creates its order(s): a cancel before it
stops the job, after it the job ends as it would have.
"""

from __future__ import annotations

from celery import group
from sqlalchemy.orm import Session

from core.db import session_scope
from domain import batch, cancel, jobs, orders, outcome
from domain.registry import BATCH_ORDER_TASK
from workers.celery_app import app
from workers.tasks.base import JobTask, begin, finish, job_task, time_limits


def _create(session: Session, job_id: str) -> jobs.JobView:
    """The job's order (once), and the job succeeded with it."""
    order = orders.create_order(session, job_id)
    result = {
        "order_id": str(order.id),
        "total_amount": order.total_amount,
        "currency": order.currency,
    }
    return jobs.succeed(session, job_id, result)


@job_task("order")
def create_order(job_id: str) -> None:
    job = begin("order", job_id, progress=10)
    if job.finished:  # an earlier delivery did the work (or the job was delivered too often)
        finish(job)
        return
    with session_scope() as session:
        job = cancel.checkpoint(session, job_id) or _create(session, job_id)
        told = outcome.announce(session, job)  # published when this commits, dropped if not
    outcome.remember(told)


@job_task("import")
def import_orders(job_id: str) -> None:
    """Hand the batch's orders to the orders workers; each reports to the batch (batch.py)."""
    job = begin("import", job_id, progress=0)
    if job.finished:
        finish(job)
        return
    with session_scope() as session:
        pending = batch.add_orders(session, job)
    group(import_one.si(order_job) for order_job in pending).apply_async(
        headers={"request_id": job.correlation_id}
    )


@app.task(name=BATCH_ORDER_TASK, base=JobTask, **time_limits("order"))
def import_one(job_id: str) -> None:
    """One order of a batch: created unless the batch is stopping; counted in the batch."""
    with session_scope() as session:
        job = jobs.begin(session, job_id, time_limits("order")["time_limit"])
        if not job.finished:
            assert job.parent_id is not None
            if batch.stopping(session, job.parent_id):
                job = jobs.cancel(session, job_id)
            else:
                job = _create(session, job_id)
        elif job.notified:
            return
        told = outcome.announce(session, job)
    outcome.remember(told)
