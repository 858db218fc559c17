"""Races over an import's row, on SQLite and PostgreSQL: two workers making its orders at
once, each counting the batch under the batch's row lock, and cancels landing while an order
is being made. None may wait for another: on PostgreSQL both did (two orders each holding the
foreign key's share lock on the batch's row; a cancel locking the batch before the orders),
each deadlock costing a second and a retry, or a 500."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.harness import Client, unique
from tests.jobs.test_cancel_and_import import orders_of, progress_of
from tests.jobs.test_jobs_e2e import frames_for_job, is_toast
from tests.stack import Stack, Worker

pytestmark = pytest.mark.anyio


async def test_two_workers_make_an_imports_orders_at_once_without_waiting_on_each_other(
    stack: Stack, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(stack.edge.ws_url, token(user))
    log = stack.worker.log_path.with_name(f"second-{unique('w')}.log")
    second = Worker(stack.worker.env, log).start()
    try:
        job_id = stack.post("/orders/import", token(user), orders_of(300)).json()["job_id"]
        frames = await frames_for_job(client, job_id, is_toast, timeout=120)
    finally:
        second.stop()
    assert progress_of(frames)[-1]["status"] == "succeeded"
    assert stack.wait_job(job_id, token(user))["result"]["created"] == 300
    both = stack.worker.log_text() + second.log_text()
    made_by_second = second.log_text().count("orders.import_one")
    assert made_by_second > 0, "the second worker made none of the orders"
    for trouble in ("deadlock detected", "retry: Retry in"):
        assert trouble not in both, trouble
    await client.close()


async def test_cancels_racing_the_orders_being_made_all_end_their_imports_cancelled(
    stack: Stack, token: Callable[..., str]
) -> None:
    """Each cancel lands while the worker is making one of the import's orders, which holds
    its own row and is about to lock the batch's: neither may wait for the other (on
    PostgreSQL a deadlock, and a 500)."""
    user = unique("u")
    client = await Client.connect(stack.edge.ws_url, token(user))
    for _ in range(15):
        job_id = stack.post("/orders/import", token(user), orders_of(60)).json()["job_id"]
        await client.until(
            lambda f, job_id=job_id: f.get("jobId") == job_id and "done" in f.get("data", {}),
            timeout=60,
        )
        answer = stack.post(f"/jobs/{job_id}/cancel", token(user))
        assert (answer.status_code, answer.json()["status"]) == (202, "cancelled"), answer.text
        frames = await frames_for_job(client, job_id, is_toast, timeout=30)
        assert progress_of(frames)[-1]["status"] == "cancelled"
    await client.close()
