"""Stripe webhook events applied to payments: each event once, state only ever forward.

Stripe may deliver an event twice, late, or before the worker has recorded the charge; the
event id is stored in the same transaction as its effect, and a payment is found by its
PaymentIntent id or, failing that, by the payment id we put in the intent's metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.models import Payment, ProcessedWebhookEvent, row_id
from domain.payments import advance, mark_paid


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
                moved = mark_paid(session, payment)
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


def _payment_for(session: Session, intent: dict[str, Any]) -> Payment | None:
    if intent.get("id"):
        found = session.scalars(
            select(Payment).where(Payment.stripe_payment_intent_id == intent["id"])
        ).one_or_none()
        if found is not None:
            return found
    key = row_id((intent.get("metadata") or {}).get("payment_id"))
    return session.get(Payment, key) if key is not None else None
