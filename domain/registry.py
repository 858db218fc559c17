"""The one table of job kinds: what the API enqueues, where, for how long it may run, how its
outcome is announced and what goes with it when it cannot be enqueued.

A task is named after its queue (`orders.create` runs on `orders`): the Celery routes route
by that prefix, so a periodic task such as `metrics.push_all` lands on its queue too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, get_args

from domain import payments
from domain.announcements import import_outcome, metrics_outcome, order_outcome, payment_outcome
from domain.jobs import JobKind, JobView

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass(frozen=True)
class TimeLimit:
    soft: int  # SoftTimeLimitExceeded is raised in the task: it can still record a failure
    hard: int  # the pool process is killed; the message is redelivered (see reject_on_worker_lost)


class Announcer(Protocol):
    """Publishes the events that close a finished job (after `after_commit` commits)."""

    def __call__(self, job: JobView, *, after_commit: Session | None = None) -> None: ...


@dataclass(frozen=True)
class JobType:
    task: str  # the Celery task's name, "<queue>.<action>"
    queue: str
    limits: TimeLimit
    announce: Announcer
    # Removes the rows that were committed with a job whose message never reached the queue.
    cleanup: Callable[[Session, str], None] | None = None
    # Lets go of what a job held that ends cancelled before its point of no return.
    release: Callable[[Session, str], None] | None = None


# kind: JobType(task, queue, TimeLimit(soft, hard) in seconds, announcer[, cleanup])
JOB_TYPES: dict[JobKind, JobType] = {
    "order": JobType("orders.create", "orders", TimeLimit(30, 45), order_outcome),
    # Stripe calls time out at 20 s, retried with backoff.
    # Its point of no return: the commit before Stripe is called (payments.prepare).
    "payment": JobType(
        "payments.charge",
        "payments",
        TimeLimit(60, 90),
        payment_outcome,
        payments.discard,
        payments.withdraw,
    ),
    "metrics": JobType("metrics.recalculate", "metrics", TimeLimit(60, 90), metrics_outcome),
    # The batch's own task only hands its orders to the group (domain/batch.py); each order
    # then runs within the order's limits, and each one finished gives the batch that long again.
    "import": JobType("orders.import", "orders", TimeLimit(60, 90), import_outcome),
}
# An order of an import: a task of its own, announced through its batch, not a job kind.
BATCH_ORDER_TASK = "orders.import_one"
QUEUES = tuple(dict.fromkeys(job_type.queue for job_type in JOB_TYPES.values()))


def _check() -> None:
    """The table cannot drift from the kinds the API accepts, nor from the routes."""
    if set(JOB_TYPES) != set(get_args(JobKind)):
        raise RuntimeError(f"JOB_TYPES {sorted(JOB_TYPES)} != JobKind {get_args(JobKind)}")
    for job_type in JOB_TYPES.values():
        if not job_type.task.startswith(f"{job_type.queue}."):
            raise RuntimeError(f"task {job_type.task} is not named after queue {job_type.queue}")


_check()
