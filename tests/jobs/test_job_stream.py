"""GET /jobs/{id}/events: an API client follows the job it submitted, over Server-Sent Events,
with the owner's token: the job's own events from its first, each with its id, in order and
once, resumable with Last-Event-ID, ending after the job has ended; a finished job replays."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from realtime import UIManager
from tests.harness import WAIT, unique
from tests.stack import COFFEE, Stack

pytestmark = pytest.mark.anyio

Event = tuple[str, dict[str, Any]]  # (the message's id, its frame)


async def follow(
    stack: Stack, token: str, job_id: str, *, last_event_id: str | None = None, stop_after: int = 0
) -> list[Event]:
    """The stream's events, read until it ends (or, with `stop_after`, until that many)."""
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    events: list[Event] = []
    url = f"{stack.api.http_url}/api/v1/jobs/{job_id}/events"
    client = httpx.AsyncClient(timeout=httpx.Timeout(WAIT, read=None))
    async with (
        asyncio.timeout(WAIT * 2),
        client as http,
        http.stream("GET", url, headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        event_id, data = None, []
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "" and data:
                frame = json.loads("\n".join(data))
                assert frame["id"] == event_id, (event_id, frame)
                events.append((frame["id"], frame))
                event_id, data = None, []
                if len(events) == stop_after:
                    return events
    return events


def submit_payment(stack: Stack, token: str, method: str = "pm_card_visa") -> str:
    order_id = stack.order(token)
    body = {"order_id": order_id, "payment_method": method, "success_url": "/thanks"}
    answer = stack.post("/payments", token, body)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["job_id"])


async def test_a_job_followed_from_its_start_sends_its_own_events_in_order_and_ends(
    stack: Stack, token: Callable[..., str]
) -> None:
    user = unique("u")
    job_id = submit_payment(stack, token(user))
    neighbour = stack.post("/orders", token(user), COFFEE).json()["job_id"]  # same user's log
    UIManager.for_user(user).show_toast("Not", "about the job", "info")
    events = await follow(stack, token(user), job_id)

    assert {frame["jobId"] for _, frame in events} == {job_id}
    ends = [
        i
        for i, (_, f) in enumerate(events)
        if f["type"] == "ui_update" and f["data"].get("type") == "job_progress"
        if f["data"]["status"] == "succeeded"
    ]
    toast = next(i for i, (_, f) in enumerate(events) if f["type"] == "ui_toast")
    redirect = next(i for i, (_, f) in enumerate(events) if f["type"] == "ui_redirect")
    assert len(ends) == 1
    assert ends[0] < toast < redirect
    assert events[redirect][1]["target"] == "/thanks"
    ids = [event_id for event_id, _ in events]
    assert len(set(ids)) == len(ids)
    assert stack.wait_job(neighbour, token(user))["status"] == "succeeded"


async def test_a_dropped_stream_resumes_with_last_event_id_with_nothing_lost_or_repeated(
    stack: Stack, token: Callable[..., str]
) -> None:
    user = unique("u")
    job_id = submit_payment(stack, token(user))
    first = await follow(stack, token(user), job_id, stop_after=1)
    rest = await follow(stack, token(user), job_id, last_event_id=first[-1][0])
    # The job has finished: following it again replays the whole of it, and ends.
    replay = await follow(stack, token(user), job_id)
    assert [event_id for event_id, _ in first + rest] == [event_id for event_id, _ in replay]
    assert [f["target"] for _, f in replay if f["type"] == "ui_redirect"] == ["/thanks"]


async def test_only_the_owner_follows_a_job_and_a_bad_last_event_id_is_a_400(
    stack: Stack, token: Callable[..., str]
) -> None:
    owner = unique("u")
    job_id = stack.post("/orders", token(owner), COFFEE).json()["job_id"]
    url = f"{stack.api.http_url}/api/v1/jobs/{job_id}/events"
    async with httpx.AsyncClient(timeout=WAIT) as http:
        stranger = await http.get(url, headers={"Authorization": f"Bearer {token(unique('u'))}"})
        assert stranger.status_code == 404
        assert (await http.get(url)).status_code == 401
        for garbage in ("not-an-id", "b1.1-0", "u1.1-0_b1.2-0", "u1.1-" + "0" * 1100):
            answer = await http.get(
                url,
                headers={"Authorization": f"Bearer {token(owner)}", "Last-Event-ID": garbage},
            )
            assert answer.status_code == 400, (garbage, answer.text)
            assert "Last-Event-ID" in answer.json()["detail"]
