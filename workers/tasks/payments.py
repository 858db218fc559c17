"""payments.charge: charge an order through Stripe, then toast and redirect, or explain."""

from __future__ import annotations

from core.db import session_scope
from domain import announcements, jobs, payments
from workers.tasks.base import announce_outcome, begin, finish, job_task, remember_notified


@job_task("payment")
def charge_payment(job_id: str) -> None:
    job = begin(job_id, progress=10)
    if not job.finished:
        with session_scope() as session:
            payment = payments.prepare(session, job_id)  # the Idempotency-Key is committed here
            announcements.progress(job, 30, after_commit=session)
        try:
            outcome = payments.charge(payments.stripe_client(), payment, job_id)
        except payments.PaymentRejected as rejected:
            outcome = payments.ChargeOutcome(False, None, str(rejected))
        with session_scope() as session:
            recorded = payments.record(session, job_id, outcome)
            result = {
                "order_id": str(payment.order_id),
                "payment_id": str(payment.id),
                "payment_intent_id": recorded.stripe_payment_intent_id,
                "success_url": payment.success_url,
                "decline_code": outcome.decline_code,
            }
            if recorded.status == "succeeded":
                job = jobs.succeed(session, job_id, result)
            else:
                job = jobs.fail(session, job_id, recorded.failure_reason or "declined", result)
            announce_outcome(session, job)  # published when this commits, dropped if not
        remember_notified(job)
    else:  # an earlier delivery did the work (or the job was delivered too often)
        finish(job)
