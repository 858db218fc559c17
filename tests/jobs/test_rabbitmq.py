"""RabbitMQ as the Celery broker (CELERY_BROKER_URL), with Redis still carrying the UI events."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from amqp.exceptions import NotFound
from kombu.connection import Connection

from cli.local_redis import LocalRedis
from tests.harness import Client, Edge, unique
from tests.stack import Stack, fresh_database, start_stack

pytestmark = pytest.mark.anyio

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
QUEUES = ("orders", "payments", "metrics")


def rabbitmq_answers() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def rabbit_stack(redis_server: LocalRedis, edge: Edge, artifacts: Path) -> Iterator[Stack]:
    if not rabbitmq_answers():
        pytest.skip("no RabbitMQ at 127.0.0.1:5672")
    for name in QUEUES:  # no stale jobs from earlier runs
        with Connection(RABBITMQ_URL) as connection, contextlib.suppress(NotFound):
            connection.default_channel.queue_purge(name)
    with fresh_database("sqlite", artifacts) as url:
        stack = start_stack(redis_server.url, url, artifacts, edge, broker_url=RABBITMQ_URL)
        yield stack
        for process in (stack.worker, stack.api, stack.stripe):
            process.stop()


async def test_an_order_runs_through_rabbitmq_and_toasts_through_redis(
    rabbit_stack: Stack, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(rabbit_stack.edge.ws_url, token(user))
    job_id = rabbit_stack.post(
        "/orders",
        token(user),
        {
            "items": [{"sku": "TEA", "name": "Tea", "quantity": 1, "unit_amount": 300}],
            "currency": "eur",
        },
    ).json()["job_id"]
    job = rabbit_stack.wait_job(job_id, token(user))
    assert job["status"] == "succeeded"
    toast = await client.until(lambda f: f["type"] == "ui_toast" and f.get("jobId") == job_id)
    assert toast["description"] == f"Order #{job['result']['order_id']} created"
    assert "amqp://guest:**@127.0.0.1:5672//" in rabbit_stack.worker.log_text()
    await client.close()
