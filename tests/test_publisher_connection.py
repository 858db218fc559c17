"""UIManager's one connection per process: shared safely by a worker's threads, and never
inherited by a forked child (a Celery prefork worker opens its own)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from realtime import UIManager
from realtime.publisher import default_event_log
from tests.harness import Client, Edge, id_of, unique

pytestmark = pytest.mark.anyio


async def test_threads_publishing_at_once_share_the_connection_and_every_event_arrives(
    edge: Edge, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(edge.ws_url, token(user))
    ui = UIManager.for_user(user)

    def publish_many(thread: int) -> list[str]:
        return [ui.update_ui({"thread": thread, "n": n}) for n in range(100)]

    with ThreadPoolExecutor(8) as pool:
        ids = [i for batch in pool.map(publish_many, range(8)) for i in batch]
    received = [id_of(f) for f in await client.events(len(ids))]
    assert sorted(received) == sorted(ids)
    assert len(set(ids)) == 800
    await client.close()


def _child_publishes(user: str, results: multiprocessing.Queue[tuple[int, str]]) -> None:
    log = default_event_log()
    results.put((int(log.client.client_id()), UIManager.for_user(user).refresh()))


async def test_a_forked_child_publishes_on_its_own_connection(
    edge: Edge, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(edge.ws_url, token(user))
    before = UIManager.for_user(user).show_toast("Parent", "before the fork", "info")
    parent_connection = int(default_event_log().client.client_id())
    fork = multiprocessing.get_context("fork")
    results: multiprocessing.Queue[tuple[int, str]] = fork.Queue()
    child = fork.Process(target=_child_publishes, args=(user, results))
    child.start()
    child_connection, from_child = results.get(timeout=10)
    child.join(10)
    assert child.exitcode == 0
    after = UIManager.for_user(user).show_toast("Parent", "after the fork", "info")
    assert child_connection != parent_connection
    assert int(default_event_log().client.client_id()) == parent_connection
    assert [id_of(f) for f in await client.events(3)] == [before, from_child, after]
    await client.close()
