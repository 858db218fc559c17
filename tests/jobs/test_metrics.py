"""Prometheus metrics on the API, the edge and the workers, read after real traffic."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest

from tests.harness import Client, unique
from tests.stack import COFFEE, Stack

pytestmark = pytest.mark.anyio


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def scrape(url: str) -> str:
    async with httpx.AsyncClient(timeout=10) as http:
        return (await http.get(url)).text


async def test_metrics_count_requests_tasks_queues_and_deliveries(
    stack: Stack, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(stack.edge.ws_url, token(user))
    edge_before = await scrape(f"{stack.edge.http_url}/metrics")
    job_id = stack.post("/orders", token(user), COFFEE).json()["job_id"]
    stack.wait_job(job_id, token(user))
    await client.until(lambda f: f["type"] == "ui_toast")

    api = await scrape(f"{stack.api.http_url}/metrics")
    assert sample(api, "insight_api_requests_total", route="/api/v1/orders", status="202") >= 1
    assert (
        sample(api, "insight_api_request_duration_seconds_count", route="/api/v1/jobs/{job_id}")
        >= 1
    )
    assert "/api/v1/jobs/" + job_id not in api  # templates, never raw ids

    edge = await scrape(f"{stack.edge.http_url}/metrics")
    delivered = sample(edge, "insight_edge_events_delivered_total", type="ui_toast")
    assert (
        delivered >= sample(edge_before, "insight_edge_events_delivered_total", type="ui_toast") + 1
    )
    assert sample(edge, "insight_edge_connections", state="live") >= 1
    assert sample(edge, "insight_edge_event_latency_seconds_count") >= 1
    assert sample(edge, "insight_edge_subscribed_channels") >= 2

    assert stack.worker.metrics_port is not None
    worker = await scrape(f"http://127.0.0.1:{stack.worker.metrics_port}/metrics")
    assert sample(worker, "insight_celery_task_runtime_seconds_count", task="orders.create",
                  state="SUCCESS") >= 1  # fmt: skip
    for queue in ("orders", "payments", "metrics"):
        assert re.search(rf'insight_celery_queue_depth{{queue="{queue}"}} \d', worker)
    await client.close()
