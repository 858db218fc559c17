"""What a finished job tells the page, published for real and read at a real WebSocket."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError

from domain import announcements
from domain.jobs import JobView
from tests.harness import Client, Edge, unique
from workers.tasks.base import human_reason

pytestmark = pytest.mark.anyio


def job(user: str, kind: str, status: str, **fields: Any) -> JobView:
    values: dict[str, Any] = {
        "id": unique("job"),
        "kind": kind,
        "user_id": user,
        "business_id": None,
        "status": status,
        "request": {},
        "result": None,
        "error": None,
        "notified": False,
        "correlation_id": "req-1",
    }
    values.update(fields)
    return JobView(**values)


async def test_a_failed_order_shows_an_error_toast_with_a_human_reason(
    edge: Edge, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(edge.ws_url, token(user))
    failed = job(
        user, "order", "failed", error=human_reason(OperationalError("x", {}, Exception()))
    )
    announcements.order_outcome(failed)
    progress, toast = await client.events(2)
    assert progress["data"] == {
        "type": "job_progress",
        "jobId": failed.id,
        "kind": "order",
        "percent": 100,
        "status": "failed",
    }
    assert toast["variant"] == "error"
    assert toast["description"] == (
        "The order could not be created: our database was unavailable; please try again in a minute"
    )
    assert (toast["jobId"], toast["requestId"]) == (failed.id, "req-1")
    await client.close()


async def test_an_order_created_then_paid_updates_its_row_before_each_toast(
    edge: Edge, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(edge.ws_url, token(user))
    made = job(user, "order", "succeeded", result={"order_id": 17})
    announcements.order_outcome(made)
    paid = job(user, "payment", "succeeded", result={"order_id": "17", "success_url": "/x"})
    announcements.payment_outcome(paid)
    frames = await client.events(7)
    updates = [f["data"] for f in frames if f["type"] == "ui_update"]
    assert {"type": "order_update", "orderId": "17", "status": "created"} in updates
    assert {"type": "order_update", "orderId": "17", "status": "paid"} in updates
    types = [(f["type"], f.get("data", {}).get("type")) for f in frames]
    assert types.index(("ui_update", "order_update")) < types.index(("ui_toast", None))
    await client.close()


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (SoftTimeLimitExceeded(), "too long"),
        (redis.ConnectionError(), "queue was unavailable"),
        (ValueError("bug"), "something went wrong"),
    ],
)
def test_reasons_are_written_for_people_not_stack_traces(error: BaseException, words: str) -> None:
    reason = human_reason(error)
    assert words in reason
    assert type(error).__name__ not in reason
