"""payments.charge: charge an order through Stripe, then toast and redirect, or explain.

Its point of no return is the commit before Stripe is called (`payments.prepare`): a cancel
before it ends the job cancelled and frees the order; after it the job ends as it would have.
"""

from __future__ import annotations

from core.db import session_scope
from domain import announcements, cancel, jobs, outcome, payments
from workers.tasks.base import begin, finish, job_task


@job_task("payment")
def charge_payment(job_id: str) -> None:
    job = begin("payment", job_id, progress=10)
    if job.finished:  # an earlier delivery did the work (or the job was delivered too often)
        finish(job)
        return
    with session_scope() as session:
        cancelled = cancel.checkpoint(session, job_id)
        if cancelled is not None:
            told = outcome.announce(session, cancelled)
        else:
            payment = payments.prepare(session, job_id)  # the Idempotency-Key is committed here
            announcements.progress(job, 30, after_commit=session)
    if cancelled is not None:
        outcome.remember(told)
        return
    try:
        charged = payments.charge(payments.stripe_client(), payment, job_id)
    except payments.PaymentRejected as rejected:
        charged = payments.ChargeOutcome(False, None, str(rejected))
    with session_scope() as session:
        recorded = payments.record(session, job_id, charged)
        result = {
            "order_id": str(payment.order_id),
            "payment_id": str(payment.id),
            "payment_intent_id": recorded.stripe_payment_intent_id,
            "success_url": payment.success_url,
            "decline_code": charged.decline_code,
        }
        if recorded.status == "succeeded":
            job = jobs.succeed(session, job_id, result)
        else:
            job = jobs.fail(session, job_id, recorded.failure_reason or "declined", result)
        told = outcome.announce(session, job)  # published when this commits, dropped if not
    outcome.remember(told)
