"""The application's own events end to end, against real processes: a producer with the test
application's INSIGHT_EVENT_MODULES, the session's private Redis, `insight edge` processes
reading the same modules, and real WebSockets. An app event keeps every guarantee of the five
(durable log, resume, idempotency, TTL, coalescing), an edge refuses to start on a module it
cannot use, and an event model that gains an optional field replays the events already stored
across an edge restart."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.local_redis import LocalRedis, free_port
from realtime import AsyncUIManager, PublishOptions, UIManager
from realtime.payloads import JobProgress
from realtime.registry import load_registry
from tests.app_events import DECLARED, EVOLVED, declared, declaring, evolved
from tests.harness import ROOT, WAIT, Client, Edge, base_env, id_of, unique, without_id
from tests.test_resilience import bulky, small_receive_window

pytestmark = pytest.mark.anyio


@pytest.fixture
def app_edge(edge_factory: Callable[..., Edge]) -> Iterator[Edge]:
    """An edge that reads the test application's event modules; this process publishes with
    the same ones."""
    with declaring(DECLARED):
        yield edge_factory(INSIGHT_EVENT_MODULES=DECLARED)


async def next_frames(client: Client, count: int) -> list[dict[str, Any]]:
    """The next `count` event frames, app events included (control frames skipped)."""
    frames: list[dict[str, Any]] = []
    while len(frames) < count:
        frame = await client.recv()
        if not frame["type"].startswith("insight_"):
            frames.append(frame)
    return frames


async def cursor_now(edge: Edge, token: str) -> str:
    """A cursor from before what the test publishes next: a socket's ready id."""
    client = await Client.connect(edge.ws_url, token)
    await client.close()
    return client.cursor


async def resume(edge: Edge, token: str, since: str, count: int) -> list[dict[str, Any]]:
    """The first `count` event frames of a socket that resumes from `since` (replayed before
    its ready frame, then live), and that nothing follows them."""
    client = await Client.connect(edge.ws_url, token, since=since)
    frames = [f for f in client.frames if not f["type"].startswith("insight_")]
    frames += await next_frames(client, count - len(frames))
    assert await client.silent_for(0.2)
    await client.close()
    return frames


async def test_an_app_event_reaches_its_user_live_with_its_context_and_nobody_else(
    app_edge: Edge, token: Callable[..., str]
) -> None:
    user, other = unique("u"), unique("u")
    client = await Client.connect(app_edge.ws_url, token(user))
    bystander = await Client.connect(app_edge.ws_url, token(other))
    ui = UIManager.for_user(user).with_context(jobId="j1")
    event_id = ui.publish(declared.CartUpdated(cartId="c1", items=3))
    confetti_id = await AsyncUIManager.for_user(user).publish(declared.Confetti(colors=["gold"]))
    cart, confetti = await next_frames(client, 2)
    assert without_id(cart) == {"jobId": "j1", "type": "cart_updated", "cartId": "c1", "items": 3}
    assert (id_of(cart), id_of(confetti)) == (event_id, confetti_id)
    assert without_id(confetti) == {"type": "ui_confetti", "colors": ["gold"]}
    assert await bystander.silent_for(0.2)
    assert not [f for f in bystander.frames if not f["type"].startswith("insight_")]
    async with httpx.AsyncClient(timeout=WAIT) as http:
        metrics = (await http.get(f"{app_edge.http_url}/metrics")).text
    assert 'insight_edge_events_delivered_total{type="cart_updated"} 1.0' in metrics
    await client.close()
    await bystander.close()


async def test_an_app_event_is_replayed_in_order_once_and_its_idempotency_key_holds(
    app_edge: Edge, token: Callable[..., str]
) -> None:
    user = unique("u")
    since = await cursor_now(app_edge, token(user))
    ui = UIManager.for_user(user)
    once = PublishOptions(idempotency_key="cart:c1:v1")
    ids = [
        ui.publish(declared.CartUpdated(cartId="c1", items=1), once),
        ui.show_toast("Added", "1 item", "success"),
        ui.publish(declared.CartUpdated(cartId="c1", items=9), once),  # the same key: nothing
        ui.update_ui(JobProgress(jobId="j", kind="order", status="running", percent=5)),
    ]
    assert ids[2] == ids[0]
    frames = await resume(app_edge, token(user), since, 3)
    assert [id_of(f) for f in frames] == [ids[0], ids[1], ids[3]]
    assert frames[0]["items"] == 1


async def test_an_app_events_ttl_is_its_own_and_bounds_its_replay(
    app_edge: Edge, token: Callable[..., str]
) -> None:
    user = unique("u")
    since = await cursor_now(app_edge, token(user))
    ui = UIManager.for_user(user)
    ui.publish(declared.Confetti(), PublishOptions(ttl=0.001))  # expired before the resume
    kept = ui.publish(declared.CartUpdated(cartId="c", items=2))
    assert [id_of(f) for f in await resume(app_edge, token(user), since, 1)] == [kept]


async def test_app_snapshots_with_one_coalesce_key_are_merged_for_a_slow_client(
    edge_factory: Callable[..., Edge], token: Callable[..., str]
) -> None:
    """The edge coalesces an app event as it does a ui_update (and counts it by its type)."""
    with declaring(DECLARED):
        edge = edge_factory(WS_SEND_BUFFER="32", INSIGHT_EVENT_MODULES=DECLARED)
        user = unique("u")
        slow = await Client.connect(edge.ws_url, token(user), **small_receive_window(edge))
        ui = UIManager.for_user(user)
        snapshot = PublishOptions(coalesce_key="cart")
        last = ""
        for n in range(600):
            last = ui.publish(declared.CartSnapshot(n=n, lines=bulky()), snapshot)
        toast = ui.show_toast("Done", "after the snapshots", "success")
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(30):
        while not frames or id_of(frames[-1]) != toast:
            frames.append(await slow.recv())
    snapshots = [f for f in frames if f["type"] == "cart_snapshot"]
    assert len(snapshots) < 600  # some were merged while the client lagged ...
    assert id_of(snapshots[-1]) == last  # ... the newest always arrives, and the toast after it
    assert [f["n"] for f in snapshots] == sorted(f["n"] for f in snapshots)
    async with httpx.AsyncClient(timeout=WAIT) as http:
        metrics = (await http.get(f"{edge.http_url}/metrics")).text
    counted = re.search(
        r'insight_edge_events_coalesced_total\{type="cart_snapshot"\} (\S+)', metrics
    )
    assert counted is not None
    assert float(counted.group(1)) == 600 - len(snapshots)
    await slow.close()


@pytest.mark.parametrize(
    "process",
    [
        ["cli.main", "edge", "--port", "{port}"],
        ["uvicorn", "api.main:app", "--port", "{port}"],
        ["celery", "-A", "workers", "worker", "-Q", "orders", "-c", "1", "--without-gossip"],
    ],
    ids=["edge", "api", "worker"],
)
def test_every_process_refuses_to_start_on_a_module_it_cannot_use(
    redis_server: LocalRedis, process: list[str]
) -> None:
    for module, named in [
        ("tests.app_events.shadowing", "'ui_toast'"),
        ("tests.app_events.broken", "does not import"),
    ]:
        env = base_env(redis_server.url, INSIGHT_EVENT_MODULES=f"{DECLARED},{module}")
        command = [sys.executable, "-m", *(a.format(port=free_port()) for a in process)]
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        output = done.stderr + done.stdout
        assert done.returncode != 0, output[-2000:]
        assert module in output
        assert named in output


async def test_the_cli_publishes_a_declared_event_and_refuses_an_undeclared_one(
    app_edge: Edge, token: Callable[..., str], redis_server: LocalRedis
) -> None:
    user = unique("u")
    client = await Client.connect(app_edge.ws_url, token(user))
    env = base_env(redis_server.url, INSIGHT_EVENT_MODULES=DECLARED)

    def insight(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", "publish", "--user", user, "event", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    sent = insight('{"type":"cart_updated","cartId":"c1","items":3}')
    assert sent.returncode == 0, sent.stderr
    [frame] = await next_frames(client, 1)
    assert (id_of(frame), frame["items"]) == (sent.stdout.strip(), 3)
    for body, named in [('{"type":"cart_emptied"}', "cart_emptied"),
                        ('{"type":"cart_updated","cartId":"c1","items":-1}', "items")]:  # fmt: skip
        refused = insight(body)
        assert refused.returncode == 2
        assert named in refused.stderr
    assert await client.silent_for(0.2)
    await client.close()


async def test_a_model_that_gained_an_optional_field_replays_the_stored_events_after_a_restart(
    edge_factory: Callable[..., Edge], token: Callable[..., str], artifacts: Path
) -> None:
    user = unique("u")
    with declaring(DECLARED):
        old_edge = edge_factory(INSIGHT_EVENT_MODULES=DECLARED)
        client = await Client.connect(old_edge.ws_url, token(user))
        since = client.cursor
        ui = UIManager.for_user(user).with_context(jobId="j-old")
        stored = [ui.publish(declared.CartUpdated(cartId="c1", items=n)) for n in (1, 2)]
        assert [id_of(f) for f in await next_frames(client, 2)] == stored
        await client.close()
        old_edge.terminate()  # SIGTERM, as a rolling deploy stops it
    with declaring(EVOLVED):
        new_edge = edge_factory(INSIGHT_EVENT_MODULES=EVOLVED)
        newer = UIManager.for_user(user).publish(
            evolved.CartUpdated(cartId="c1", items=3, coupon="SPRING")
        )
        frames = await resume(new_edge, token(user), since, 3)
    assert [id_of(f) for f in frames] == [*stored, newer]
    reader = load_registry([EVOLVED])  # the new release reads what the old one wrote
    parsed = [
        reader.parse({k: v for k, v in f.items() if k not in {"id", "jobId"}}) for f in frames
    ]
    assert parsed == [
        evolved.CartUpdated(cartId="c1", items=1),
        evolved.CartUpdated(cartId="c1", items=2),
        evolved.CartUpdated(cartId="c1", items=3, coupon="SPRING"),
    ]
    assert "coupon" not in frames[0]  # stored by the old model, relayed as it was written
