"""Cancel and the import, end to end: the API, a real Celery worker, the local Stripe server,
the database (SQLite and PostgreSQL) and the events at the user's WebSocket."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy

from tests.harness import Client, eventually, unique
from tests.jobs.test_jobs_e2e import create_order, frames_for_job, is_toast
from tests.stack import COFFEE, Stack

pytestmark = pytest.mark.anyio


def progress_of(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        f["data"]
        for f in frames
        if f["type"] == "ui_update" and f["data"].get("type") == "job_progress"
    ]


def orders_of(count: int, items: int = 1) -> dict[str, Any]:
    item = COFFEE["items"][0]
    return {
        "orders": [
            {"items": [dict(item, sku=f"SKU-{i}-{j}") for j in range(items)], "currency": "usd"}
            for i in range(count)
        ]
    }


# A database that refuses one order's items: a real failure of one order inside an import.
REFUSE = {
    "sqlite": [
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON order_items WHEN NEW.sku = 'POISON' "
        "BEGIN SELECT RAISE(ABORT, 'refused by the database'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.sku = 'POISON' THEN RAISE EXCEPTION 'refused by the database'; END IF; "
        "RETURN NEW; END $$",
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON order_items "
        "FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
    ],
}
ACCEPT = {
    "sqlite": ["DROP TRIGGER refuse_poison"],
    "postgresql": ["DROP TRIGGER refuse_poison ON order_items", "DROP FUNCTION refuse_poison"],
}


@contextmanager
def refusing_poison(database_url: str) -> Iterator[None]:
    """While inside, the database refuses to store an order item whose sku is POISON."""
    engine = sqlalchemy.create_engine(database_url)
    backend = engine.dialect.name
    try:
        with engine.begin() as connection:
            for statement in REFUSE[backend]:
                connection.exec_driver_sql(statement)
        yield
    finally:
        with engine.begin() as connection:
            for statement in ACCEPT[backend]:
                connection.exec_driver_sql(statement)
        engine.dispose()


async def test_a_queued_job_cancelled_ends_cancelled_at_once_and_never_runs(
    stack: Stack, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(stack.edge.ws_url, token(user))
    order_id = await create_order(stack, client, token(user))
    # The only worker is busy with a slow charge: the next job stays queued behind it.
    stack.stripe_fault("slow", count=1, delay_seconds=2)
    payment = stack.post(
        "/payments", token(user), {"order_id": order_id, "payment_method": "pm_card_visa"}
    ).json()["job_id"]
    queued = stack.post("/orders", token(user), COFFEE).json()["job_id"]

    answer = stack.post(f"/jobs/{queued}/cancel", token(user))
    assert answer.status_code == 202, answer.text
    assert (answer.json()["job_id"], answer.json()["status"]) == (queued, "cancelled")
    frames = await frames_for_job(client, queued, is_toast)
    assert progress_of(frames)[-1]["status"] == "cancelled"
    assert (frames[-1]["title"], frames[-1]["variant"]) == ("Order cancelled", "info")
    stack.wait_job(payment, token(user))  # the worker then takes the cancelled job's message
    await eventually(lambda: queued in stack.worker.log_text())
    with pytest.raises(TimeoutError):  # and tells the page nothing more about it
        await frames_for_job(client, queued, lambda _: True, timeout=1.0)
    assert stack.wait_job(queued, token(user))["status"] == "cancelled"
    assert [o["order_id"] for o in stack.get("/orders", token(user)).json()] == [order_id]
    await client.close()


async def test_a_cancel_after_a_payments_point_of_no_return_lets_it_end_as_it_would(
    stack: Stack, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(stack.edge.ws_url, token(user))
    order_id = await create_order(stack, client, token(user))
    before = stack.stripe_state()["requests"]
    stack.stripe_fault("slow", count=1, delay_seconds=1.5)
    job_id = stack.post(
        "/payments", token(user), {"order_id": order_id, "payment_method": "pm_card_visa"}
    ).json()["job_id"]
    await eventually(lambda: stack.stripe_state()["requests"] > before)  # Stripe was called

    answer = stack.post(f"/jobs/{job_id}/cancel", token(user))
    assert (answer.status_code, answer.json()["status"]) == (202, "running")
    frames = await frames_for_job(client, job_id, lambda f: f["type"] == "ui_redirect")
    assert [t["title"] for t in frames if is_toast(t)] == ["Payment received"]
    assert progress_of(frames)[-1]["status"] == "succeeded"
    assert stack.wait_job(job_id, token(user))["status"] == "succeeded"
    assert len(stack.charges_for_job(job_id)) == 1
    await client.close()


async def test_cancel_refuses_a_finished_job_with_409_and_anyone_elses_with_404(
    stack: Stack, token: Callable[..., str]
) -> None:
    owner, other = unique("u"), unique("u")
    job_id = stack.post("/orders", token(owner), COFFEE).json()["job_id"]
    assert stack.wait_job(job_id, token(owner))["status"] == "succeeded"
    finished = stack.post(f"/jobs/{job_id}/cancel", token(owner))
    assert finished.status_code == 409
    assert "succeeded" in finished.json()["detail"]
    for path in (f"/jobs/{job_id}/cancel", "/jobs/no-such-job/cancel"):
        refused = stack.post(path, token(other))
        assert refused.status_code == 404, refused.text
    assert stack.post(f"/jobs/{job_id}/cancel", "not-a-token").status_code == 401


async def test_an_import_creates_every_order_with_one_progress_stream_and_one_toast(
    stack: Stack, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(stack.edge.ws_url, token(user))
    answer = stack.post("/orders/import", token(user), orders_of(40, items=2))
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]

    frames = await frames_for_job(client, job_id, is_toast, timeout=60)
    [toast] = [f for f in frames if is_toast(f)]
    assert (toast["title"], toast["description"]) == (
        "Orders imported",
        "40 orders created, 0 failed",
    )
    progress = progress_of(frames)
    running = [p for p in progress if "done" in p]
    assert running, progress
    assert all(p["total"] == 40 and p["kind"] == "import" for p in running)
    assert [p["done"] for p in running] == sorted({p["done"] for p in running})
    assert any("etaSeconds" in p for p in running)
    assert (progress[-1]["status"], progress[-1]["percent"]) == ("succeeded", 100)
    job = stack.wait_job(job_id, token(user))
    assert job["result"] == {"total": 40, "created": 40, "failed": 0, "cancelled": 0}
    orders = stack.get("/orders?limit=100", token(user)).json()
    assert sorted(o["items"][0]["sku"] for o in orders) == sorted(f"SKU-{i}-0" for i in range(40))
    assert await client.silent_for(0.5)  # no second toast
    await client.close()


async def test_an_order_that_fails_inside_an_import_is_counted_and_the_import_still_ends(
    stack: Stack, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(stack.edge.ws_url, token(user))
    body = orders_of(12)
    for poisoned in (3, 8):
        body["orders"][poisoned]["items"][0]["sku"] = "POISON"
    with refusing_poison(stack.database_url):
        job_id = stack.post("/orders/import", token(user), body).json()["job_id"]
        frames = await frames_for_job(client, job_id, is_toast, timeout=60)
    [toast] = [f for f in frames if is_toast(f)]
    assert (toast["title"], toast["description"], toast["variant"]) == (
        "Orders imported",
        "10 orders created, 2 failed",
        "warning",
    )
    assert progress_of(frames)[-1] | {"jobId": job_id} == {
        "type": "job_progress",
        "jobId": job_id,
        "kind": "import",
        "percent": 100,
        "status": "succeeded",
        "done": 12,
        "total": 12,
    }
    job = stack.wait_job(job_id, token(user))
    assert job["result"] == {"total": 12, "created": 10, "failed": 2, "cancelled": 0}
    skus = sorted(o["items"][0]["sku"] for o in stack.get("/orders", token(user)).json())
    assert skus == sorted(f"SKU-{i}-0" for i in range(12) if i not in (3, 8))
    assert await client.silent_for(0.5)  # no second toast
    await client.close()


async def test_an_import_whose_every_order_fails_ends_failed_with_one_toast(
    stack: Stack, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(stack.edge.ws_url, token(user))
    body = orders_of(3)
    for order in body["orders"]:
        order["items"][0]["sku"] = "POISON"
    with refusing_poison(stack.database_url):
        job_id = stack.post("/orders/import", token(user), body).json()["job_id"]
        frames = await frames_for_job(client, job_id, is_toast, timeout=60)
    [toast] = [f for f in frames if is_toast(f)]
    assert (toast["title"], toast["variant"]) == ("Import failed", "error")
    assert toast["description"].endswith("0 orders created, 3 not created")
    job = stack.wait_job(job_id, token(user))
    assert (job["status"], job["result"]["failed"]) == ("failed", 3)
    assert stack.get("/orders", token(user)).json() == []
    await client.close()


@pytest.mark.timeout(300)  # a thousand orders made by one worker, on a machine maybe busy
async def test_an_import_of_1000_orders_over_100_kb_is_one_job(
    stack: Stack, token: Callable[..., str]
) -> None:
    user = unique("u")
    body = orders_of(1000, items=3)
    answer = stack.post("/orders/import", token(user), body)
    assert answer.status_code == 202, answer.text
    job = stack.wait_job(answer.json()["job_id"], token(user), timeout=270)
    assert job["result"]["created"] == 1000


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (orders_of(1001), ["body", "orders"]),
        ({"orders": []}, ["body", "orders"]),
        (
            {"orders": [*orders_of(3)["orders"], {"items": [], "currency": "usd"}]},
            ["body", "orders", 3, "items"],
        ),
        (
            {"orders": [orders_of(1)["orders"][0], dict(COFFEE, currency="USD")]},
            ["body", "orders", 1, "currency"],
        ),
    ],
)
async def test_a_bad_import_is_a_422_naming_the_order_and_nothing_is_created(
    stack: Stack, token: Callable[..., str], body: dict[str, Any], loc: list[Any]
) -> None:
    user = unique("u")
    refused = stack.post("/orders/import", token(user), body)
    assert refused.status_code == 422, refused.text
    assert [error["loc"] for error in refused.json()["detail"]] == [loc]
    assert stack.get("/orders", token(user)).json() == []


async def test_a_cancelled_import_stops_the_orders_that_had_not_started(
    stack: Stack, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(stack.edge.ws_url, token(user))
    job_id = stack.post("/orders/import", token(user), orders_of(1000)).json()["job_id"]
    await client.until(
        lambda f: f.get("jobId") == job_id and f["type"] == "ui_update" and "done" in f["data"],
        timeout=60,
    )
    answer = stack.post(f"/jobs/{job_id}/cancel", token(user))
    assert answer.status_code == 202, answer.text
    # Its orders not started end at once; no order of an import is ever seen running (each
    # is made in one transaction), so the import has ended by the time the cancel answers.
    assert answer.json()["status"] == "cancelled"

    frames = await frames_for_job(client, job_id, is_toast, timeout=60)
    job = stack.wait_job(job_id, token(user), timeout=60)
    assert job["status"] == "cancelled"
    result = job["result"]
    assert 0 < result["created"] < 1000
    assert result["created"] + result["cancelled"] + result["failed"] == 1000
    assert result["cancelled"] > 0
    [toast] = [f for f in frames if is_toast(f)]
    assert toast["title"] == "Import cancelled"
    assert toast["description"].startswith(f"{result['created']} orders created")
    assert progress_of(frames)[-1]["status"] == "cancelled"
    assert len(stack.get("/orders?limit=100", token(user)).json()) == min(result["created"], 100)
    await client.close()
