"""Stripe webhooks: signatures verified on the raw body, each event applied once, forward only."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.db import build_engine
from core.models import Payment, ProcessedWebhookEvent
from stripe_local.webhooks import sign
from tests.harness import TEST_WEBHOOK_SECRET, unique
from tests.stack import Stack


def event(kind: str, intent: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"evt_{secrets.token_hex(8)}",
        "object": "event",
        "type": kind,
        "created": int(time.time()),
        "data": {"object": intent},
    }


def post_event(
    stack: Stack,
    body: dict[str, Any],
    *,
    secret: str = TEST_WEBHOOK_SECRET,
    age_seconds: int = 0,
    signed: bool = True,
) -> httpx.Response:
    """POST `body` as Stripe would: raw JSON, signed with `secret` `age_seconds` ago."""
    payload = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if signed:
        headers["Stripe-Signature"] = sign(payload, secret, int(time.time()) - age_seconds)
    return httpx.post(
        f"{stack.api.http_url}/api/v1/webhooks/stripe",
        content=payload,
        headers=headers,
        timeout=10,
    )


def count_events(stack: Stack) -> int:
    engine = build_engine(stack.database_url)
    with engine.connect() as connection:
        total = connection.scalar(select(func.count()).select_from(ProcessedWebhookEvent))
    engine.dispose()
    return int(total or 0)


def payment_of(stack: Stack, intent_id: str) -> Payment:
    engine = build_engine(stack.database_url)
    with Session(engine) as session:
        payment = session.scalars(
            select(Payment).where(Payment.stripe_payment_intent_id == intent_id)
        ).one()
    engine.dispose()
    return payment


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param({"secret": "whsec_wrong_secret_000"}, id="wrong-secret"),
        pytest.param({"age_seconds": 600}, id="older-than-the-300s-tolerance"),
        pytest.param({"signed": False}, id="no-signature"),
    ],
)
def test_a_webhook_with_a_bad_signature_is_400_and_writes_nothing(
    stack: Stack, signature: dict[str, Any]
) -> None:
    before = count_events(stack)
    body = event("payment_intent.succeeded", {"id": "pi_x", "metadata": {}})
    response = post_event(stack, body, **signature)
    assert response.status_code == 400
    assert count_events(stack) == before


def test_stripe_server_webhooks_reach_the_api_after_a_payment(
    stack: Stack, token: Callable[..., str]
) -> None:
    user = token(unique("u"))
    _, job = stack.paid_order(user)
    intent_id = job["result"]["payment_intent_id"]
    deadline = time.monotonic() + 10
    while not any(e for e in stack.stripe_state()["webhooks"]):
        assert time.monotonic() < deadline, "no webhook was delivered"
        time.sleep(0.05)
    assert payment_of(stack, intent_id).status == "succeeded"


def test_a_duplicate_webhook_has_one_effect_and_state_only_moves_forward(
    stack: Stack, token: Callable[..., str]
) -> None:
    user = token(unique("u"))
    order_id, job = stack.paid_order(user)
    intent = {"id": job["result"]["payment_intent_id"], "metadata": {}}
    succeeded = event("payment_intent.succeeded", intent)
    first, second = post_event(stack, succeeded), post_event(stack, succeeded)
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json() == {"received": True, "duplicate": True}
    # A late "payment_failed" for the same intent must not undo the success.
    late = post_event(
        stack,
        event(
            "payment_intent.payment_failed", {**intent, "last_payment_error": {"message": "late"}}
        ),
    )
    assert late.json() == {"received": True, "duplicate": False}
    payment = payment_of(stack, intent["id"])
    assert (payment.status, payment.failure_reason) == ("succeeded", None)
    assert stack.get(f"/orders/{order_id}", user).json()["status"] == "paid"


def payments_of_order(stack: Stack, order_id: str) -> list[Payment]:
    engine = build_engine(stack.database_url)
    with Session(engine) as session:
        found = list(
            session.scalars(
                select(Payment).where(Payment.order_id == int(order_id)).order_by(Payment.id)
            )
        )
    engine.dispose()
    return found


def test_a_declined_payment_that_stripe_later_charges_is_flagged_not_a_500(
    stack: Stack, token: Callable[..., str]
) -> None:
    """A payment declined, then the order paid by another, then Stripe reports the first
    succeeded after all (asynchronous methods can): the order was charged twice. The index
    that keeps one payment per order refuses a second success, which was a 500 that Stripe
    retried for days; now the event is taken (200), the late charge is flagged for a refund
    on its payment, and an error is logged for an operator."""
    user = token(unique("u"))
    order_id = stack.order(user)
    declined = {"order_id": order_id, "payment_method": "pm_card_chargeDeclined"}
    stack.wait_job(stack.post("/payments", user, declined).json()["job_id"], user)
    paid = {"order_id": order_id, "payment_method": "pm_card_visa"}
    stack.wait_job(stack.post("/payments", user, paid).json()["job_id"], user)
    first, second = payments_of_order(stack, order_id)
    assert (first.status, second.status) == ("failed", "succeeded")

    late = event(
        "payment_intent.succeeded",
        {"id": first.stripe_payment_intent_id, "metadata": {"payment_id": str(first.id)}},
    )
    response = post_event(stack, late)
    assert response.status_code == 200, response.text
    first, second = payments_of_order(stack, order_id)
    assert (first.status, second.status) == ("failed", "succeeded")
    assert first.failure_reason is not None
    assert "refund" in first.failure_reason
    assert "charged twice" in stack.api.log_text()
