"""Jobs of users whose ids are as identity providers issue them (`urn:user:42`, `auth0|5f3c`,
a space, any script, braces; business `acme:eu`): the job runs, its toast reaches the user's
socket and its metrics reach the business's, on SQLite and PostgreSQL. (256-character ids are
proved by tests/test_identities.py: the job tables' columns hold 200 until their migration.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.awkward_ids import SHAPES, awkward
from tests.harness import Client
from tests.jobs.test_jobs_e2e import frames_for_job, is_toast
from tests.stack import COFFEE, Stack

pytestmark = pytest.mark.anyio

JOB_SHAPES = [shape for shape in SHAPES if shape != "256 characters"]


def is_metrics(frame: dict[str, Any]) -> bool:
    return bool(frame["type"] == "ui_update" and frame["data"].get("type") == "metrics_update")


@pytest.mark.parametrize("shape", JOB_SHAPES)
async def test_an_order_job_toasts_its_user_and_metrics_reach_the_business(
    shape: str, stack: Stack, token: Callable[..., str]
) -> None:
    user, business = awkward(shape)
    jwt = token(user, business)
    client = await Client.connect(stack.edge.ws_url, jwt)

    response = stack.post("/orders", jwt, COFFEE)
    assert response.status_code == 202, response.text
    order_job = response.json()["job_id"]
    toast = (await frames_for_job(client, order_job, is_toast))[-1]
    assert (toast["title"], toast["variant"]) == ("Order created", "success")
    assert stack.wait_job(order_job, jwt)["status"] == "succeeded"

    response = stack.post("/metrics/recalculate", jwt, {"business_id": business})
    assert response.status_code == 202, response.text
    metrics_job = response.json()["job_id"]
    update = (await frames_for_job(client, metrics_job, is_metrics))[-1]
    assert update["data"]["businessId"] == business
    assert update["data"]["metrics"]["today"]["orders"] == 1
    assert stack.wait_job(metrics_job, jwt)["status"] == "succeeded"
    await client.close()
