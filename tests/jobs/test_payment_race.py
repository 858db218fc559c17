"""One payment per order, whatever the concurrency (docs/jobs.md, "Job API").

Thirty POST /payments for one order, all in flight at once against the real API process:
one is accepted, every other is a 409, and Stripe is asked to charge the order once. The
database refuses a second live payment of an order, so this holds however the requests
interleave, on SQLite and on PostgreSQL; a failed payment leaves the order free to be paid.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from core.db import build_engine
from core.models import Payment
from tests.harness import unique
from tests.stack import COFFEE, Stack

pytestmark = pytest.mark.anyio

ORDERS = 10
REQUESTS_PER_ORDER = 30
VISA = "pm_card_visa"

# How the requests of one order name themselves: the Idempotency-Key of the n-th, if any.
KeyOf = Callable[[str, int], str | None]


def a_key_each(order_id: str, n: int) -> str | None:
    return f"pay-{order_id}-{n}"


def no_key(order_id: str, n: int) -> str | None:
    return None


def one_key(order_id: str, n: int) -> str | None:
    return f"pay-{order_id}"


async def pay_all_at_once(
    stack: Stack, token: str, order_ids: list[str], key_of: KeyOf
) -> dict[str, list[httpx.Response]]:
    """REQUESTS_PER_ORDER POST /payments for each order, every one in flight together: one
    connection each, interleaved across the orders so that each order's requests meet in
    the API's threads. The answers, by order."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(
        base_url=f"{stack.api.http_url}/api/v1", limits=limits, timeout=30
    ) as client:

        async def pay(order_id: str, n: int) -> tuple[str, httpx.Response]:
            headers = {"Authorization": f"Bearer {token}"}
            key = key_of(order_id, n)
            if key is not None:
                headers["Idempotency-Key"] = key
            body = {"order_id": order_id, "payment_method": VISA}
            return order_id, await client.post("/payments", json=body, headers=headers)

        async with asyncio.timeout(60):
            answers = await asyncio.gather(
                *(pay(order_id, n) for n in range(REQUESTS_PER_ORDER) for order_id in order_ids)
            )
    by_order: dict[str, list[httpx.Response]] = {order_id: [] for order_id in order_ids}
    for order_id, response in answers:
        by_order[order_id].append(response)
    return by_order


def orders_of(stack: Stack, token: str, count: int) -> list[str]:
    """`count` created orders of the token's user, their jobs submitted together."""
    jobs = [stack.post("/orders", token, COFFEE).json()["job_id"] for _ in range(count)]
    return [stack.wait_job(job_id, token)["result"]["order_id"] for job_id in jobs]


def statuses(answers: dict[str, list[httpx.Response]]) -> dict[str, dict[int, int]]:
    return {
        order_id: dict(Counter(r.status_code for r in responses))
        for order_id, responses in answers.items()
    }


def payments_by_order(stack: Stack, order_ids: list[str]) -> dict[str, list[str]]:
    """The statuses of every payment row of these orders, oldest first."""
    engine = build_engine(stack.database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            select(Payment.order_id, Payment.status)
            .where(Payment.order_id.in_([int(o) for o in order_ids]))
            .order_by(Payment.id)
        ).all()
    engine.dispose()
    found: dict[str, list[str]] = {order_id: [] for order_id in order_ids}
    for order_id, status in rows:
        found[str(order_id)].append(status)
    return found


def intents_by_order(stack: Stack, order_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The PaymentIntents the local Stripe server made for these orders."""
    found: dict[str, list[dict[str, Any]]] = {order_id: [] for order_id in order_ids}
    for intent in stack.stripe_state()["payment_intents"]:
        order_id = intent["metadata"].get("order_id")
        if order_id in found:
            found[order_id].append(intent)
    return found


def finish_accepted(
    stack: Stack, token: str, answers: dict[str, list[httpx.Response]]
) -> dict[str, list[str]]:
    """Wait for every accepted job; their end statuses, by order."""
    return {
        order_id: [
            stack.wait_job(r.json()["job_id"], token)["status"]
            for r in responses
            if r.status_code == 202
        ]
        for order_id, responses in answers.items()
    }


@pytest.mark.parametrize("key_of", [a_key_each, no_key], ids=["a-key-each", "no-key"])
async def test_of_thirty_simultaneous_payments_of_an_order_one_is_accepted_and_charged(
    stack: Stack, token: Callable[..., str], key_of: KeyOf
) -> None:
    user = token(unique("u"))
    order_ids = orders_of(stack, user, ORDERS)

    answers = await pay_all_at_once(stack, user, order_ids, key_of)

    assert statuses(answers) == {o: {202: 1, 409: REQUESTS_PER_ORDER - 1} for o in order_ids}
    for order_id, responses in answers.items():
        for refused in (r for r in responses if r.status_code == 409):
            assert refused.headers["content-type"] == "application/json"
            assert f"order {order_id}" in refused.json()["detail"]
    assert finish_accepted(stack, user, answers) == {o: ["succeeded"] for o in order_ids}
    assert payments_by_order(stack, order_ids) == {o: ["succeeded"] for o in order_ids}
    charged = intents_by_order(stack, order_ids)
    assert {o: [i["status"] for i in charged[o]] for o in order_ids} == {
        o: ["succeeded"] for o in order_ids
    }


async def test_thirty_simultaneous_repeats_of_one_key_all_get_the_first_job(
    stack: Stack, token: Callable[..., str]
) -> None:
    user = token(unique("u"))
    [order_id] = orders_of(stack, user, 1)

    answers = await pay_all_at_once(stack, user, [order_id], one_key)

    assert statuses(answers) == {order_id: {202: REQUESTS_PER_ORDER}}
    assert len({r.json()["job_id"] for r in answers[order_id]}) == 1
    assert stack.wait_job(answers[order_id][0].json()["job_id"], user)["status"] == "succeeded"
    assert payments_by_order(stack, [order_id]) == {order_id: ["succeeded"]}
    assert len(intents_by_order(stack, [order_id])[order_id]) == 1


async def test_after_a_declined_payment_the_order_takes_one_new_payment(
    stack: Stack, token: Callable[..., str]
) -> None:
    user = token(unique("u"))
    [order_id] = orders_of(stack, user, 1)
    declined = stack.post(
        "/payments", user, {"order_id": order_id, "payment_method": "pm_card_chargeDeclined"}
    )
    assert stack.wait_job(declined.json()["job_id"], user)["status"] == "failed"

    answers = await pay_all_at_once(stack, user, [order_id], a_key_each)

    assert statuses(answers) == {order_id: {202: 1, 409: REQUESTS_PER_ORDER - 1}}
    assert finish_accepted(stack, user, answers) == {order_id: ["succeeded"]}
    assert payments_by_order(stack, [order_id]) == {order_id: ["failed", "succeeded"]}
    assert stack.get(f"/orders/{order_id}", user).json()["status"] == "paid"
    again = stack.post("/payments", user, {"order_id": order_id, "payment_method": VISA})
    assert (again.status_code, again.json()["detail"]) == (409, f"order {order_id} is already paid")
