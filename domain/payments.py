"""Charge an order with Stripe, at most once per job, however often the job runs.

The Idempotency-Key sent to Stripe is derived from the job and stored on the payment row
before the first call, so a retried or redelivered job repeats the same request and Stripe
answers it from its idempotency cache instead of charging again; that also covers a response
lost after the charge was made.

And an order is charged by one payment at a time: `open_payment` checks, for a clear refusal
in the common case, and the database's ONE_PAYMENT_PER_ORDER refuses what two concurrent
requests that both passed the check would commit (`lost_to_another` names that refusal).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import stripe
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.config import get_settings
from core.db import violates
from core.models import IN_FLIGHT, ONE_PAYMENT_PER_ORDER, PAYMENT_STATUSES, Job, Order, Payment

# Where the page goes after a successful payment whose request named no success_url.
DEFAULT_SUCCESS_URL = "/orders?status=success"


class TransientPaymentError(Exception):
    """Stripe was unreachable, rate-limited or failing: try the same request again later."""


class PaymentRejected(Exception):
    """Stripe refused the request for a reason retrying cannot fix."""


class PaymentConflict(Exception):
    """The order cannot take another payment now: it is paid, or a payment of it is running."""


@dataclass(frozen=True)
class PaymentView:
    id: int
    order_id: int
    amount: int
    currency: str
    payment_method: str
    success_url: str
    idempotency_key: str
    status: str
    failure_reason: str | None


@dataclass(frozen=True)
class ChargeOutcome:
    succeeded: bool
    payment_intent_id: str | None
    failure_reason: str | None = None
    decline_code: str | None = None


@lru_cache(maxsize=1)
def stripe_client() -> stripe.StripeClient:
    """One client per process; retries are the task's business, not the HTTP client's."""
    settings = get_settings()
    key = settings.stripe_api_key.get_secret_value() if settings.stripe_api_key else None
    if not key:
        raise PaymentRejected("STRIPE_API_KEY is not configured")
    return stripe.StripeClient(
        key,
        base_addresses={"api": settings.stripe_api_base} if settings.stripe_api_base else {},
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=settings.stripe_timeout_seconds),
    )


def open_payment(
    session: Session, job: Job, order: Order, payment_method: str, success_url: str | None
) -> Payment:
    """The pending payment that `job` will charge, added to the session; raises
    PaymentConflict while `order` is paid or already has a payment in flight (as far as this
    session can see: the commit is refused if a concurrent one got there first)."""
    if order.status == "paid":
        raise PaymentConflict(f"order {order.id} is already paid")
    in_flight = session.scalars(
        select(Payment.id).where(Payment.order_id == order.id, Payment.status.in_(IN_FLIGHT))
    ).first()
    if in_flight is not None:
        raise _in_progress(order)
    payment = Payment(
        job_id=job.id,
        order_id=order.id,
        user_id=job.user_id,
        business_id=order.business_id,
        amount=order.total_amount,
        currency=order.currency,
        payment_method=payment_method,
        success_url=success_url or DEFAULT_SUCCESS_URL,
        status="pending",
    )
    session.add(payment)
    return payment


def lost_to_another(error: IntegrityError, order: Order) -> PaymentConflict | None:
    """The conflict a failed commit of `open_payment`'s payment was, when another request's
    payment of `order` was committed first (ONE_PAYMENT_PER_ORDER); None for any other error."""
    return _in_progress(order) if violates(error, ONE_PAYMENT_PER_ORDER) else None


def _in_progress(order: Order) -> PaymentConflict:
    return PaymentConflict(f"a payment of order {order.id} is already in progress")


def discard(session: Session, job_id: str) -> None:
    """The payment of a job whose message never reached its queue goes with the job."""
    session.execute(delete(Payment).where(Payment.job_id == job_id))


def withdraw(session: Session, job_id: str) -> None:
    """The payment of a job cancelled before Stripe was called holds its order no more."""
    payment = session.scalars(select(Payment).where(Payment.job_id == job_id)).one_or_none()
    if payment is not None and payment.status == "pending" and advance(payment, "failed"):
        payment.failure_reason = "cancelled"


def _payment(session: Session, job_id: str) -> Payment:
    payment = session.scalars(
        select(Payment).where(Payment.job_id == job_id).with_for_update()
    ).one_or_none()
    if payment is None:
        raise PaymentRejected(f"no payment for job {job_id}")
    return payment


def prepare(session: Session, job_id: str) -> PaymentView:
    """Fix the Idempotency-Key before any call to Stripe (committed by the caller's session)."""
    payment = _payment(session, job_id)
    if payment.idempotency_key is None:
        payment.idempotency_key = f"insight-payment-{job_id}"
    advance(payment, "processing")
    return PaymentView(
        payment.id,
        payment.order_id,
        payment.amount,
        payment.currency,
        payment.payment_method,
        payment.success_url,
        payment.idempotency_key,
        payment.status,
        payment.failure_reason,
    )


def charge(client: stripe.StripeClient, payment: PaymentView, job_id: str) -> ChargeOutcome:
    """Create and confirm the PaymentIntent; a decline is an outcome, not an error."""
    try:
        intent = client.v1.payment_intents.create(
            params={
                "amount": payment.amount,
                "currency": payment.currency,
                "payment_method": payment.payment_method,
                "confirm": True,
                # Server-side confirmation: no redirect-based methods, so no return_url needed.
                "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
                "metadata": {
                    "payment_id": str(payment.id),
                    "order_id": str(payment.order_id),
                    "job_id": job_id,
                },
            },
            options={"idempotency_key": payment.idempotency_key},
        )
    except stripe.CardError as error:
        intent_id = (
            error.error.payment_intent.id if error.error and error.error.payment_intent else None
        )
        return ChargeOutcome(
            succeeded=False,
            payment_intent_id=intent_id,
            failure_reason=error.user_message or "The card was declined.",
            decline_code=error.error.decline_code if error.error else None,
        )
    except (stripe.RateLimitError, stripe.APIConnectionError) as error:
        raise TransientPaymentError(type(error).__name__) from error
    except stripe.IdempotencyError as error:  # same key, other parameters: never retried
        raise PaymentRejected(error.user_message or "idempotency conflict") from error
    except stripe.APIError as error:
        # 409: a request with this Idempotency-Key is still running at Stripe (a redelivered
        # job racing its own first attempt); stripe-python reports it as a plain APIError.
        if error.http_status is None or error.http_status == 409 or error.http_status >= 500:
            raise TransientPaymentError(f"Stripe answered {error.http_status}") from error
        raise PaymentRejected(error.user_message or "Stripe refused the payment") from error
    except stripe.StripeError as error:
        raise PaymentRejected(error.user_message or type(error).__name__) from error
    if intent.status == "succeeded":
        return ChargeOutcome(succeeded=True, payment_intent_id=intent.id)
    reason = intent.last_payment_error.message if intent.last_payment_error else None
    return ChargeOutcome(False, intent.id, reason or f"payment {intent.status}")


def advance(payment: Payment, status: str) -> bool:
    """Move a payment's state forward only; returns whether it moved."""
    if PAYMENT_STATUSES.index(status) <= PAYMENT_STATUSES.index(payment.status):
        return False
    payment.status = status
    return True


def record(session: Session, job_id: str, outcome: ChargeOutcome) -> Payment:
    """Store Stripe's answer on the payment (and mark the order paid on success)."""
    payment = _payment(session, job_id)
    if outcome.payment_intent_id and payment.stripe_payment_intent_id is None:
        payment.stripe_payment_intent_id = outcome.payment_intent_id
    if outcome.succeeded:
        mark_paid(session, payment)
    elif advance(payment, "failed"):
        payment.failure_reason = outcome.failure_reason
    return payment


def mark_paid(session: Session, payment: Payment) -> bool:
    """Payment succeeded: the payment and its order say so (whoever learns it first)."""
    moved = advance(payment, "succeeded")
    if moved:
        payment.failure_reason = None
        order = session.get(Order, payment.order_id)
        if order is not None:
            order.status = "paid"
    return moved
