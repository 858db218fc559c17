"""Events published with UIManager reach exactly the WebSockets they are addressed to,
in exactly the seed's wire format, whether the edge is served by `insight edge` or by plain
uvicorn."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from cli.local_redis import LocalRedis
from realtime import AsyncUIManager, Recipient, UIManager, publisher
from realtime.broker import topology
from tests.figures import FIGURES
from tests.harness import (
    ROOT,
    Client,
    Edge,
    PlainUvicornEdge,
    as_published,
    id_of,
    start_edge,
    unique,
    without_id,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(
    scope="module",
    # `insight edge` is the smoke tests' edge; plain uvicorn is beyond the fast tier.
    params=[Edge, pytest.param(PlainUvicornEdge, marks=pytest.mark.integration)],
    ids=["insight-edge", "plain-uvicorn"],
)
def served_by(request: pytest.FixtureRequest) -> type[Edge]:
    """Every test here runs against both delivery paths: `insight edge` (frames written
    straight to the socket by its protocol) and plain uvicorn (every frame an ASGI send)."""
    served: type[Edge] = request.param
    return served


@pytest.fixture(scope="module")
def edge(served_by: type[Edge], redis_server: LocalRedis, artifacts: Path) -> Iterator[Edge]:
    process = start_edge(redis_server.url, artifacts, served_by)
    yield process
    process.stop()


@pytest.fixture
def second_edge(served_by: type[Edge], redis_server: LocalRedis, artifacts: Path) -> Iterator[Edge]:
    process = start_edge(redis_server.url, artifacts, served_by)
    yield process
    process.stop()


@pytest.mark.smoke  # the edge: connect, publish, receive
async def test_each_of_the_five_events_arrives_as_exactly_the_seed_json(
    edge: Edge, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(edge.ws_url, token(user))
    ui = UIManager.for_user(user)
    ids = [
        ui.redirect("/orders?status=success"),
        ui.show_toast("Order created", "Order #17 was created", "success"),
        ui.refresh(),
        ui.update_ui({"type": "metrics_update", "businessId": "b1", "metrics": FIGURES}),
        ui.show_modal("payment_failed", {"orderId": "17"}),
    ]
    frames = await client.events(5)
    assert [id_of(f) for f in frames] == ids
    assert [without_id(f) for f in frames] == [
        {"type": "ui_redirect", "target": "/orders?status=success"},
        {"type": "ui_toast", "title": "Order created", "description": "Order #17 was created",
         "variant": "success"},
        {"type": "ui_refresh"},
        {"type": "ui_update",
         "data": {"type": "metrics_update", "businessId": "b1", "metrics": FIGURES}},
        {"type": "ui_modal", "data": {"type": "payment_failed", "payload": {"orderId": "17"}}},
    ]  # fmt: skip
    await client.close()


async def test_async_twin_publishes_the_same_frames(edge: Edge, token: Callable[..., str]) -> None:
    user = unique("u")
    client = await Client.connect(edge.ws_url, token(user))
    event_id = await AsyncUIManager.for_user(user).show_toast("Saved", "All good", "info")
    [frame] = await client.events(1)
    assert as_published(frame) == {
        "id": event_id, "type": "ui_toast", "title": "Saved", "description": "All good",
        "variant": "info",
    }  # fmt: skip
    await client.close()


def test_a_burst_of_first_async_publishes_makes_one_client_and_every_one_lands(
    redis_server: LocalRedis, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 publishes at once from a loop that has published nothing yet (the job API's first
    requests after a start): one client is made, and calls past its pool wait for a
    connection rather than fail (redis-py refuses a call past 100 by default)."""
    user = unique("u")
    made = 0

    async def counted_client(url: str, **options: Any) -> Any:
        nonlocal made
        made += 1
        await asyncio.sleep(0.01)  # the other first calls come while it is being made
        return await topology.async_client(url, **options)

    monkeypatch.setattr(publisher, "async_client", counted_client)

    async def burst() -> list[str]:
        ui = AsyncUIManager.for_user(user)
        return await asyncio.gather(*(ui.update_ui({"n": n}) for n in range(300)))

    ids = asyncio.run(burst())  # a new event loop: no client made for it yet
    assert made == 1
    assert len(set(ids)) == 300
    assert redis_client.xlen(Recipient.user(user).stream_key) == 300


async def test_business_and_broadcast_events_reach_every_member_and_nobody_else(
    edge: Edge, token: Callable[..., str]
) -> None:
    business, other_business = unique("b"), unique("b")
    alice = await Client.connect(edge.ws_url, token(unique("alice"), business))
    bob = await Client.connect(edge.ws_url, token(unique("bob"), business))
    carol = await Client.connect(edge.ws_url, token(unique("carol"), other_business))
    loner = await Client.connect(edge.ws_url, token(unique("dave")))

    to_business = UIManager.for_business(business).update_ui({"orders": 3})
    to_everyone = UIManager.broadcast().show_toast("Maintenance", "At 22:00", "warning")

    for member in (alice, bob):
        assert [id_of(f) for f in await member.events(2)] == [to_business, to_everyone]
    for outsider in (carol, loner):
        assert [id_of(f) for f in await outsider.events(1)] == [to_everyone]
        assert await outsider.silent_for(0.3)
    for client in (alice, bob, carol, loner):
        await client.close()


async def test_many_users_with_random_addressing_get_only_their_own_events(
    edge: Edge, token: Callable[..., str]
) -> None:
    users = [unique("u") for _ in range(60)]
    clients = await asyncio.gather(*(Client.connect(edge.ws_url, token(u)) for u in users))
    rng = random.Random(7)
    expected: dict[str, list[str]] = {u: [] for u in users}
    for n in range(600):
        user = rng.choice(users)
        expected[user].append(UIManager.for_user(user).update_ui({"n": n}))

    async def collect(user: str, client: Client) -> None:
        frames = await client.events(len(expected[user]))
        assert [id_of(f) for f in frames] == expected[user]  # all, in order, nobody else's
        assert await client.silent_for(0.2)

    await asyncio.gather(*(collect(u, c) for u, c in zip(users, clients, strict=True)))
    await asyncio.gather(*(c.close() for c in clients))


async def test_two_tabs_of_one_user_each_get_every_event_once(
    edge: Edge, token: Callable[..., str]
) -> None:
    user = unique("u")
    tabs = [await Client.connect(edge.ws_url, token(user)) for _ in range(2)]
    ids = [UIManager.for_user(user).update_ui({"n": n}) for n in range(20)]
    for tab in tabs:
        assert [id_of(f) for f in await tab.events(20)] == ids
        assert await tab.silent_for(0.2)
    for tab in tabs:
        await tab.close()


async def test_tabs_on_two_edge_processes_each_get_every_event_once(
    edge: Edge, second_edge: Edge, token: Callable[..., str]
) -> None:
    user, business = unique("u"), unique("b")
    tabs = [
        await Client.connect(edge.ws_url, token(user, business)),
        await Client.connect(second_edge.ws_url, token(user, business)),
    ]
    ids = [
        UIManager.for_user(user).show_toast("One", "to the user", "info"),
        UIManager.for_business(business).update_ui({"two": 2}),
        UIManager.broadcast().refresh(),
    ]
    for tab in tabs:
        assert [id_of(f) for f in await tab.events(3)] == ids
        assert await tab.silent_for(0.3)
    for tab in tabs:
        await tab.close()


async def test_a_user_leaving_does_not_deafen_the_same_users_other_tab(
    edge: Edge, token: Callable[..., str]
) -> None:
    user = unique("u")
    staying = await Client.connect(edge.ws_url, token(user))
    for _ in range(5):
        leaving = await Client.connect(edge.ws_url, token(user))
        await leaving.close()
    event_id = UIManager.for_user(user).refresh()
    assert [id_of(f) for f in await staying.events(1)] == [event_id]
    await staying.close()


async def test_hundreds_of_users_connecting_at_once_are_all_subscribed(
    edge: Edge, token: Callable[..., str]
) -> None:
    users = [unique("u") for _ in range(300)]
    clients = await asyncio.gather(*(Client.connect(edge.ws_url, token(u)) for u in users))
    ids = {u: UIManager.for_user(u).show_toast("Hi", u, "info") for u in users}

    async def check(user: str, client: Client) -> None:
        assert [id_of(f) for f in await client.events(1)] == [ids[user]]

    await asyncio.gather(*(check(u, c) for u, c in zip(users, clients, strict=True)))
    await asyncio.gather(*(c.close() for c in clients))


async def test_users_coming_and_going_while_events_flow_never_leave_anyone_deaf(
    edge: Edge, token: Callable[..., str]
) -> None:
    users = [unique("u") for _ in range(20)]
    steady = {u: await Client.connect(edge.ws_url, token(u)) for u in users}
    stop = asyncio.Event()

    async def churn() -> None:
        rng = random.Random(3)
        while not stop.is_set():
            batch = [
                Client.connect(edge.ws_url, token(rng.choice(users)), wait_ready=False)
                for _ in range(10)
            ]
            for client in await asyncio.gather(*batch):
                await client.close()

    churning = asyncio.create_task(churn())
    expected: dict[str, list[str]] = {u: [] for u in users}
    for n in range(400):
        user = users[n % len(users)]
        expected[user].append(UIManager.for_user(user).update_ui({"n": n}))
        if n % 40 == 0:
            await asyncio.sleep(0)  # let the churn run between publishes
    results = await asyncio.gather(
        *(steady[u].events(len(expected[u])) for u in users), return_exceptions=True
    )
    stop.set()
    await churning
    for user, frames in zip(users, results, strict=True):
        assert not isinstance(frames, BaseException), f"{user}: {frames!r}"
        assert [id_of(f) for f in frames] == expected[user]
    for client in steady.values():
        await client.close()


def _insight(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip


@pytest.mark.smoke  # the CLI: insight token, insight publish
async def test_cli_token_and_publish_drive_a_real_connection(edge: Edge) -> None:
    user = unique("u")
    minted = _insight("token", "--user", user, "--business", "b1", "--ttl", "120")
    assert minted.returncode == 0, minted.stderr
    client = await Client.connect(edge.ws_url, minted.stdout.strip())
    sent = _insight(
        "publish", "--user", user, "toast", "Hello", "From the CLI", "--variant", "success"
    )
    assert sent.returncode == 0, sent.stderr
    [frame] = await client.events(1)
    assert as_published(frame) == {"id": sent.stdout.strip(), "type": "ui_toast", "title": "Hello",
                     "description": "From the CLI", "variant": "success"}  # fmt: skip
    bad = _insight("publish", "--user", user, "toast", "x", "y", "--variant", "purple")
    assert bad.returncode == 2
    assert "variant" in bad.stderr
    snapshot = ("publish", "--user", user, "update", "{}", "--coalesce-key", "k", "--version")
    newer, older = _insight(*snapshot, "2"), _insight(*snapshot, "1")
    assert older.stdout == newer.stdout  # the older one is answered with the newer id
    [frame] = await client.events(1)
    assert id_of(frame) == newer.stdout.strip()
    keyless = _insight("publish", "--user", user, "update", "{}", "--version", "1")
    assert keyless.returncode == 2
    assert "coalesce_key" in keyless.stderr
    await client.close()


@pytest.mark.integration  # a fresh interpreter
def test_importing_the_publisher_imports_no_web_framework_and_starts_nothing() -> None:
    probe = (
        "import sys, threading; import realtime; from realtime import UIManager; "
        "assert 'fastapi' not in sys.modules and 'starlette' not in sys.modules, 'web'; "
        "assert threading.active_count() == 1, 'threads'; print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert result.stdout.strip() == "ok", result.stderr


async def test_events_about_a_job_carry_its_id_beside_the_seed_keys(
    edge: Edge, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(edge.ws_url, token(user))
    ui = UIManager.for_user(user).with_context(jobId="job-17")
    event_id = ui.show_toast("Order created", "Order #17 was created", "success")
    [frame] = await client.events(1)
    assert as_published(frame) == {
        "id": event_id, "jobId": "job-17", "type": "ui_toast", "title": "Order created",
        "description": "Order #17 was created", "variant": "success",
    }  # fmt: skip
    with pytest.raises(ValueError, match="unknown context"):
        UIManager.for_user(user).with_context(type="ui_refresh")
    await client.close()


async def test_a_burst_arrives_in_order_and_a_reconnect_with_since_gets_what_it_missed(
    edge: Edge, token: Callable[..., str]
) -> None:
    """Through either path (under plain uvicorn the fan-out has no socket to write to
    directly, so every frame is an ASGI send): in order, nothing lost, then the replay."""
    user = unique("u")
    client = await Client.connect(edge.ws_url, token(user))
    ui = UIManager.for_user(user)
    ids = [ui.update_ui({"n": n}) for n in range(200)]
    assert [id_of(f) for f in await client.events(200)] == ids
    await client.close()
    missed = [ui.show_toast("Missed", str(n), "info") for n in range(20)]
    back = await Client.connect(edge.ws_url, token(user), since=ids[-1])
    assert [id_of(f) for f in back.frames if f["type"].startswith("ui_")] == missed
    await back.close()


def test_an_edge_served_without_insight_edge_warns_outside_development(
    edge: Edge, served_by: type[Edge]
) -> None:
    """Plain uvicorn lacks the handshake limits and the bounded close (docs/operations.md: for
    development only); started so with ENVIRONMENT=test, the edge says so in its log."""
    warned = "served without `insight edge`" in edge.log_text()
    assert warned == (served_by is PlainUvicornEdge)
