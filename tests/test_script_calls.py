"""What a publish relies on from the connection it runs its script on, against a Redis of the
test's own: a server that forgot the script (a restart, a new master after a failover) is
sent it; a connection that died (a Redis restart) is replaced once; a Redis that is down is
an error at once, not a hang; the reply is the script's, whichever driver runs it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import multiprocessing
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import cast

import pytest
import redis
import redis.asyncio

from cli.local_redis import LocalRedis, free_port
from realtime.broker.drivers import AsyncDriver, SyncDriver
from realtime.broker.log_calls import Page, replay, retry_key, start_position
from realtime.broker.log_scripts import REPLAY
from realtime.broker.topology import async_client, sync_client
from realtime.eventlog import AsyncEventLog, EventLog, Retention
from realtime.events import Toast
from realtime.publisher import AsyncUIManager, UIManager
from realtime.recipients import Recipient
from tests.harness import unique

pytestmark = [pytest.mark.anyio, pytest.mark.integration]
RETENTION = Retention(max_len=100, max_age_seconds=60)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """A Redis to flush, stop, restart and count the clients of, without touching anyone
    else's."""
    server = LocalRedis(free_port(), tmp_path / "redis").start()
    yield server
    if server.process is not None:  # were a test to fail while it is stopped (SIGSTOP)
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


Publish = Callable[[Toast], Awaitable[str]]


async def publisher(driver: str, url: str, user: str, timeout: float = 5) -> Publish:
    """The user's publish, through the synchronous driver (as a Celery task) or the asyncio
    one (as the API), each on a client made as the process's default one is."""
    recipient = Recipient.user(user)
    if driver == "sync":
        client = sync_client(url, single_connection_client=True, socket_timeout=timeout)
        ui = UIManager(recipient, EventLog(client, RETENTION))

        async def publish(event: Toast) -> str:
            return ui.publish(event)

        return publish
    async_log = AsyncEventLog(await async_client(url, socket_timeout=timeout), RETENTION)
    return AsyncUIManager(recipient, async_log).publish


def toast(n: int) -> Toast:
    return Toast(title="Saved", description=f"#{n}", variant="success")


def without_clock(page: Page) -> Page:
    """The page without what the clock decides (a page at the log's end reads it)."""
    return dataclasses.replace(page, through=None)


def log_of(url: str, user: str) -> dict[str, str]:
    """The user's log, read with a plain client: each event's description -> its Stream
    entry id (a description logged twice fails the test)."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        entries = cast(
            list[tuple[str, dict[str, str]]], client.xrange(Recipient.user(user).stream_key)
        )
    finally:
        client.close()
    found: dict[str, str] = {}
    for entry, fields in entries:
        description = json.loads(fields["f"])["description"]
        assert description not in found, f"{description} logged twice"
        found[description] = entry
    return found


def entry_of(url: str, user: str, description: str) -> str:
    """The Stream id of the user's one logged event with this description."""
    return log_of(url, user)[description]


def logged(url: str, user: str) -> int:
    """How many entries the user's log holds, read with a plain client."""
    client = redis.Redis.from_url(url)
    try:
        return int(client.xlen(Recipient.user(user).stream_key))
    finally:
        client.close()


def forget_the_scripts(server: LocalRedis) -> None:
    """SCRIPT FLUSH: as a new master after a failover, which never loaded them."""
    client = redis.Redis.from_url(server.url)
    client.script_flush()
    client.close()


def restart(server: LocalRedis) -> None:
    """No persistence: the log and the scripts are gone, and the client's socket is dead."""
    server.stop()
    server.start()


@pytest.mark.parametrize("driver", ["sync", "async"])
@pytest.mark.parametrize(("disruption", "left"), [(forget_the_scripts, 2), (restart, 1)])
async def test_the_first_publish_after_redis_forgot_the_scripts_or_restarted_succeeds(
    own_redis: LocalRedis, driver: str, disruption: Callable[[LocalRedis], None], left: int
) -> None:
    """The script's text is sent to a server that does not know it, and a dead connection is
    replaced once, before the call could fail."""
    user = unique("u")
    publish = await publisher(driver, own_redis.url, user)
    first = await publish(toast(1))
    disruption(own_redis)
    second = await publish(toast(2))
    assert second != first
    assert logged(own_redis.url, user) == left


@pytest.mark.parametrize("driver", ["sync", "async"])
async def test_a_call_cut_off_mid_reply_leaves_nothing_for_the_next_call_to_read(
    own_redis: LocalRedis, driver: str
) -> None:
    """The worst moment for a connection's replies: a call gives up while Redis is stalled
    (a timeout, or an asyncio caller's cancel), and Redis answers it later. The next call on
    the same client must read its own reply, not the stalled call's."""
    user = unique("u")
    publish = await publisher(driver, own_redis.url, user, timeout=0.5)
    await publish(toast(0))
    assert own_redis.process is not None
    os.kill(own_redis.process.pid, signal.SIGSTOP)
    try:
        with pytest.raises((redis.TimeoutError, TimeoutError)):
            await asyncio.wait_for(publish(toast(1)), 2)
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)
    second = await publish(toast(2))
    assert second.endswith(f".{entry_of(own_redis.url, user, '#2')}")


@pytest.mark.parametrize("driver", ["sync", "async"])
async def test_a_publish_to_a_redis_that_is_down_raises_at_once(
    own_redis: LocalRedis, driver: str
) -> None:
    publish = await publisher(driver, own_redis.url, unique("u"))
    await publish(toast(1))
    own_redis.stop()
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        await publish(toast(2))
    assert time.monotonic() - started < 2


async def test_both_drivers_hand_the_call_the_reply_a_redis_py_script_gets(
    own_redis: LocalRedis,
) -> None:
    """The call layer parses the raw reply: the drivers must read what redis-py's `Script`
    reads (bulk strings, nested arrays, integers, nil), for a publish and a page of the log."""
    recipient = Recipient.user(unique("u"))
    sync_log = EventLog(sync_client(own_redis.url), RETENTION)
    ids = [UIManager(recipient, sync_log).publish(toast(n)) for n in range(3)]
    async_log = AsyncEventLog(await async_client(own_redis.url), RETENTION)
    ids.append(await AsyncUIManager(recipient, async_log).publish(toast(3)))
    assert len(set(ids)) == 4
    page = replay(
        recipient,
        start_position("u", (1, 0)),
        check=True,
        max_entries=100,
        max_bytes=1 << 20,
        retention=RETENTION,
    )
    plain = redis.Redis.from_url(own_redis.url)
    by_redis_py = page.parse(plain.register_script(REPLAY.text)(page.keys, page.args))
    by_sync = SyncDriver(plain).run(page)
    by_async = await AsyncDriver(redis.asyncio.Redis.from_url(own_redis.url)).run(page)
    assert without_clock(by_sync) == without_clock(by_async) == without_clock(by_redis_py)
    bodies = [json.loads(body) for _, _, body, _ in by_redis_py.entries]
    assert [body["description"] for body in bodies] == ["#0", "#1", "#2", "#3"]


def _child_retry_key(keys: multiprocessing.Queue[str]) -> None:
    keys.put(retry_key())


def test_a_forked_child_makes_retry_keys_of_its_own() -> None:
    """A call without an idempotency key is guarded by a key of its own: a forked child (a
    Celery prefork worker) that reused its parent's would have its events taken for repeats."""
    before = retry_key()
    fork = multiprocessing.get_context("fork")
    keys: multiprocessing.Queue[str] = fork.Queue()
    child = fork.Process(target=_child_retry_key, args=(keys,))
    child.start()
    from_child = keys.get(timeout=10)
    child.join(10)
    after = retry_key()
    assert len({before, from_child, after}) == 3
    assert from_child.rpartition(".")[0] != before.rpartition(".")[0] == after.rpartition(".")[0]
