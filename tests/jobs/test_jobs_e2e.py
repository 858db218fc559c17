"""End to end: HTTP in, Celery worker, Stripe, and the events at the user's WebSocket."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.harness import Client, eventually, unique
from tests.stack import COFFEE, Stack

pytestmark = pytest.mark.anyio


async def frames_for_job(
    client: Client, job_id: str, until: Callable[[dict[str, Any]], bool], timeout: float = 20
) -> list[dict[str, Any]]:
    """This job's frames up to and including the first that satisfies `until`, within
    `timeout` however long the quiet between two frames."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            frame = await client.recv(timeout=timeout)
            if frame.get("jobId") == job_id:
                seen.append(frame)
                if until(frame):
                    return seen


def is_toast(frame: dict[str, Any]) -> bool:
    return bool(frame["type"] == "ui_toast")


async def create_order(stack: Stack, client: Client, token: str) -> str:
    response = stack.post("/orders", token, COFFEE)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    await frames_for_job(client, job_id, is_toast)
    order_id: str = stack.wait_job(job_id, token)["result"]["order_id"]
    return order_id


@pytest.mark.smoke  # the job API and a Celery worker: a job end to end
async def test_an_order_gives_progress_then_a_success_toast_and_the_job_reads_succeeded(
    stack: Stack, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(stack.edge.ws_url, token(user, "b1"))
    response = stack.post("/orders", token(user, "b1"), COFFEE)
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status"] == "queued"
    assert (
        response.headers["Location"]
        == accepted["status_url"]
        == f"/api/v1/jobs/{accepted['job_id']}"
    )

    frames = await frames_for_job(client, accepted["job_id"], is_toast)
    updates = [f["data"] for f in frames if f["type"] == "ui_update"]
    progress = [u["percent"] for u in updates if u["type"] == "job_progress"]
    assert progress == sorted(progress)
    assert progress[-1] == 100
    job = stack.wait_job(accepted["job_id"], token(user))
    assert (job["status"], job["kind"]) == ("succeeded", "order")
    order_id = job["result"]["order_id"]
    assert updates[-1] == {"type": "order_update", "orderId": order_id, "status": "created"}
    assert {k: v for k, v in frames[-1].items() if k not in ("id", "requestId")} == {
        "jobId": accepted["job_id"],
        "type": "ui_toast",
        "title": "Order created",
        "description": f"Order #{order_id} created",
        "variant": "success",
    }
    order = stack.get(f"/orders/{order_id}", token(user)).json()
    assert (order["total_amount"], order["currency"]) == (900, "usd")
    assert order["items"] == COFFEE["items"]
    assert [o["order_id"] for o in stack.get("/orders", token(user)).json()] == [order_id]
    await client.close()


@pytest.mark.smoke  # the local Stripe server: a charge
async def test_a_payment_gives_a_success_toast_and_a_redirect(
    stack: Stack, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(stack.edge.ws_url, token(user))
    order_id = await create_order(stack, client, token(user))
    response = stack.post(
        "/payments",
        token(user),
        {"order_id": order_id, "payment_method": "pm_card_visa", "success_url": "/thanks"},
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    frames = await frames_for_job(client, job_id, lambda f: f["type"] == "ui_redirect")
    toasts = [f for f in frames if is_toast(f)]
    assert [(t["title"], t["variant"]) for t in toasts] == [("Payment received", "success")]
    assert frames[-1]["target"] == "/thanks"
    job = stack.wait_job(job_id, token(user))
    assert job["status"] == "succeeded"
    assert len(stack.charges_for_job(job_id)) == 1
    assert stack.get(f"/orders/{order_id}", token(user)).json()["status"] == "paid"
    await client.close()


async def test_a_decline_gives_an_error_toast_and_a_modal_and_the_job_reads_failed(
    stack: Stack, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(stack.edge.ws_url, token(user))
    order_id = await create_order(stack, client, token(user))
    job_id = stack.post(
        "/payments", token(user), {"order_id": order_id, "payment_method": "pm_card_chargeDeclined"}
    ).json()["job_id"]
    frames = await frames_for_job(client, job_id, lambda f: f["type"] == "ui_modal")
    [toast] = [f for f in frames if is_toast(f)]
    assert (toast["variant"], toast["description"]) == ("error", "Your card was declined.")
    assert frames[-1]["data"]["type"] == "payment_failed"
    assert frames[-1]["data"]["payload"]["orderId"] == order_id
    job = stack.wait_job(job_id, token(user))
    assert (job["status"], job["error"]) == ("failed", "Your card was declined.")
    assert stack.charges_for_job(job_id) == []
    assert stack.get(f"/orders/{order_id}", token(user)).json()["status"] == "created"
    await client.close()


async def test_a_metrics_job_reaches_every_member_of_the_business_and_no_one_else(
    stack: Stack, token: Callable[..., str]
) -> None:
    business = unique("b")
    owner, colleague, outsider = unique("owner"), unique("colleague"), unique("outsider")
    clients = {
        name: await Client.connect(stack.edge.ws_url, token(name, biz))
        for name, biz in ((owner, business), (colleague, business), (outsider, unique("b")))
    }
    await create_order(stack, clients[owner], token(owner, business))
    job_id = stack.post("/metrics/recalculate", token(owner, business), {}).json()["job_id"]

    def metrics_update(frame: dict[str, Any]) -> bool:
        return frame["type"] == "ui_update" and frame["data"].get("type") == "metrics_update"  # type: ignore[no-any-return]

    for member in (owner, colleague):
        [update] = [
            f
            for f in await frames_for_job(clients[member], job_id, metrics_update)
            if metrics_update(f)
        ]
        assert update["data"]["businessId"] == business
        figures = update["data"]["metrics"]
        assert (figures["today"]["orders"], figures["30d"]["orders"]) == (1, 1)
    assert await clients[outsider].silent_for(0.5)
    assert stack.wait_job(job_id, token(owner, business))["status"] == "succeeded"
    for client in clients.values():
        await client.close()


async def test_a_repeated_idempotency_key_gives_the_same_job_and_one_order(
    stack: Stack, token: Callable[..., str]
) -> None:
    user = unique("u")
    first = stack.post("/orders", token(user), COFFEE, **{"Idempotency-Key": "order-1"})
    again = stack.post("/orders", token(user), COFFEE, **{"Idempotency-Key": "order-1"})
    assert first.status_code == again.status_code == 202
    assert first.json()["job_id"] == again.json()["job_id"]
    stack.wait_job(first.json()["job_id"], token(user))
    assert len(stack.get("/orders", token(user)).json()) == 1
    other = dict(COFFEE, currency="eur")
    refused = stack.post("/orders", token(user), other, **{"Idempotency-Key": "order-1"})
    assert refused.status_code == 422
    assert "Idempotency-Key" in refused.json()["detail"]


async def test_kill_9_of_the_worker_mid_payment_charges_once_and_toasts_once(
    stack: Stack, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(stack.edge.ws_url, token(user))
    order_id = await create_order(stack, client, token(user))
    before = stack.stripe_state()
    stack.stripe_fault("slow", count=1, delay_seconds=1.5)  # keeps the charge call in flight
    job_id = stack.post(
        "/payments", token(user), {"order_id": order_id, "payment_method": "pm_card_visa"}
    ).json()["job_id"]
    # Kill the pool process while Stripe holds its charge request (received, still slow).
    await eventually(lambda: stack.stripe_state()["requests"] > before["requests"])
    for pid in stack.worker.pool_pids():
        os.kill(pid, signal.SIGKILL)
    frames = await frames_for_job(client, job_id, lambda f: f["type"] == "ui_redirect", timeout=40)
    assert stack.wait_job(job_id, token(user))["status"] == "succeeded"
    assert len(stack.charges_for_job(job_id)) == 1
    # The killed attempt's charge went through at Stripe; the redelivered job was answered
    # from Stripe's idempotency cache (after "key in use" while the first was still running).
    after = stack.stripe_state()
    assert after["replayed"] + after["key_in_use"] > before["replayed"] + before["key_in_use"]
    assert await client.silent_for(1.0)  # no second toast or redirect comes later
    assert len([f for f in frames if is_toast(f)]) == 1
    await client.close()


@pytest.mark.parametrize(
    ("fault", "count", "delay"),
    [("http_500", 2, 0.0), ("http_429", 2, 0.0), ("lose_response", 1, 3.0)],
    ids=["stripe-500-twice", "stripe-429-twice", "response-lost-after-charge"],
)
async def test_transient_stripe_failures_are_retried_into_exactly_one_charge(
    stack: Stack, token: Callable[..., str], fault: str, count: int, delay: float
) -> None:
    user = unique("u")
    client = await Client.connect(stack.edge.ws_url, token(user))
    order_id = await create_order(stack, client, token(user))
    stack.stripe_fault(fault, count=count, delay_seconds=delay)
    job_id = stack.post(
        "/payments", token(user), {"order_id": order_id, "payment_method": "pm_card_visa"}
    ).json()["job_id"]
    job = stack.wait_job(job_id, token(user), timeout=40)
    assert job["status"] == "succeeded", job
    assert len(stack.charges_for_job(job_id)) == 1
    await client.close()


async def test_someone_elses_job_and_order_are_404(stack: Stack, token: Callable[..., str]) -> None:
    owner, stranger = unique("owner"), unique("stranger")
    job_id = stack.post("/orders", token(owner), COFFEE).json()["job_id"]
    order_id = stack.wait_job(job_id, token(owner))["result"]["order_id"]
    assert stack.get(f"/jobs/{job_id}", token(stranger)).status_code == 404
    assert stack.get(f"/orders/{order_id}", token(stranger)).status_code == 404
    paying = stack.post(
        "/payments", token(stranger), {"order_id": order_id, "payment_method": "pm_card_visa"}
    )
    assert paying.status_code == 404
    assert stack.get("/orders", token(stranger)).json() == []


async def test_one_request_id_follows_the_job_and_no_log_line_holds_the_token(
    stack: Stack, token: Callable[..., str]
) -> None:
    user = unique("u")
    secret = token(user)
    client = await Client.connect(stack.edge.ws_url, secret)
    request_id = f"req-{unique('trace')}"
    response = stack.post("/orders", secret, COFFEE, **{"X-Request-ID": request_id})
    job_id = response.json()["job_id"]
    frames = await frames_for_job(client, job_id, is_toast)
    assert {f["requestId"] for f in frames} == {request_id}  # in every event about the job
    await client.close()

    logs = {
        "api": stack.api.log_text(),
        "worker": stack.worker.log_text(),
        "edge": stack.edge.log_text(),
        "stripe": stack.stripe.log_text(),
    }
    for name in ("api", "worker"):
        lines = [line for line in logs[name].splitlines() if request_id in line]
        assert lines, f"no {name} log line carries the request id"
        assert all(line.startswith("{") for line in lines)  # structured JSON lines
    worker_lines = [line for line in logs["worker"].splitlines() if request_id in line]
    assert any(job_id in line for line in worker_lines)  # ... and the job id beside it
    for name, text in logs.items():
        assert secret not in text, f"the token is in the {name} log"
        assert secret.split(".")[2] not in text, f"the token's signature is in the {name} log"


def test_a_charge_racing_its_own_in_flight_request_is_retried_not_failed(stack: Stack) -> None:
    import stripe

    from domain import payments
    from tests.stack import STRIPE_TEST_KEY

    client = stripe.StripeClient(
        STRIPE_TEST_KEY, base_addresses={"api": stack.stripe.http_url}, max_network_retries=0
    )
    payment = payments.PaymentView(
        id=990_001,
        order_id=990_001,
        amount=500,
        currency="usd",
        payment_method="pm_card_visa",
        success_url="/",
        idempotency_key=f"race-{unique('k')}",
        status="processing",
        failure_reason=None,
    )
    before = stack.stripe_state()["requests"]
    stack.stripe_fault("slow", count=1, delay_seconds=2)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(payments.charge, client, payment, "job-race")
        deadline = time.monotonic() + 10
        while stack.stripe_state()["requests"] == before:  # until Stripe holds the first one
            assert time.monotonic() < deadline, "the first charge never reached the server"
            time.sleep(0.02)
        with pytest.raises(payments.TransientPaymentError, match="409"):
            payments.charge(client, payment, "job-race")  # same key while the first still runs
        assert first.result(timeout=10).succeeded
    again = payments.charge(client, payment, "job-race")  # afterwards: Stripe's cached answer
    assert again.succeeded
    assert again.payment_intent_id == first.result().payment_intent_id
