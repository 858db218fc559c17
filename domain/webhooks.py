"""Stripe webhook events applied to payments: each event once, state only ever forward.

Stripe may deliver an event twice, late, or before the worker has recorded the charge; the
event id is stored in the same transaction as its effect, and a payment is found by its
PaymentIntent id or, failing that, by the payment id we put in the intent's metadata. A late
success of a payment whose order another payment holds is a second charge: it is flagged for
a refund, never applied (one payment per order, `core.models.ONE_PAYMENT_PER_ORDER`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.models import HOLDS_ITS_ORDER, Payment, ProcessedWebhookEvent, row_id
from domain.payments import advance, mark_paid

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PaymentChange:
    """A payment whose state an event moved; the page of its owner is told."""

    payment_id: int
    order_id: int
    job_id: str
    user_id: str
    status: str


def apply_event(session: Session, event: dict[str, Any]) -> tuple[bool, PaymentChange | None]:
    """Record and apply `event`; returns (first time seen, change). Commits."""
    session.add(ProcessedWebhookEvent(id=event["id"], type=event["type"]))
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        return False, None
    change = None
    intent = (event.get("data") or {}).get("object") or {}
    if event["type"] in ("payment_intent.succeeded", "payment_intent.payment_failed"):
        payment = _payment_for(session, intent)
        if payment is not None:
            if payment.stripe_payment_intent_id is None:
                payment.stripe_payment_intent_id = intent.get("id")
            if event["type"] == "payment_intent.succeeded":
                holder = _other_holder(session, payment)
                if holder is None:
                    moved = mark_paid(session, payment)
                else:
                    moved = False
                    _flag_second_charge(payment, holder, intent.get("id"))
            else:
                moved = advance(payment, "failed")
                if moved:
                    error = intent.get("last_payment_error") or {}
                    payment.failure_reason = error.get("message") or "payment failed"
            if moved:
                change = PaymentChange(
                    payment.id, payment.order_id, payment.job_id, payment.user_id, payment.status
                )
    session.commit()
    return True, change


def _other_holder(session: Session, payment: Payment) -> Payment | None:
    """Another payment that holds the order (in flight or succeeded), if this one does not:
    a success of this one would then be the order's second charge."""
    if payment.status in HOLDS_ITS_ORDER:
        return None
    return session.scalars(
        select(Payment).where(
            Payment.order_id == payment.order_id,
            Payment.id != payment.id,
            Payment.status.in_(HOLDS_ITS_ORDER),
        )
    ).first()


def _flag_second_charge(payment: Payment, holder: Payment, intent_id: object) -> None:
    """Stripe charged a payment declined earlier while another one holds its order: the
    customer paid twice. One payment per order is the database's rule, so this one stays
    failed, says why, and an operator is told to refund it; the event is taken, as Stripe
    would otherwise send it again for days."""
    payment.failure_reason = (
        f"charged by Stripe after it was declined, while payment {holder.id} holds order "
        f"{payment.order_id}: refund PaymentIntent {intent_id}"
    )
    logger.error(
        "order charged twice: refund the late charge at Stripe",
        extra={
            "order_id": payment.order_id,
            "payment_id": payment.id,
            "holder_payment_id": holder.id,
            "payment_intent_id": intent_id,
        },
    )


def _payment_for(session: Session, intent: dict[str, Any]) -> Payment | None:
    if intent.get("id"):
        found = session.scalars(
            select(Payment).where(Payment.stripe_payment_intent_id == intent["id"])
        ).one_or_none()
        if found is not None:
            return found
    key = row_id((intent.get("metadata") or {}).get("payment_id"))
    return session.get(Payment, key) if key is not None else None
