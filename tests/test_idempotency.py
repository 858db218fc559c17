"""Once: a publish that returned an id is in the log, and no publish lands twice, whether the
caller repeats it with its idempotency key or redis-py re-sends a script whose reply it lost."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest
import redis

from cli.local_redis import LocalRedis, free_port
from realtime import NotReplicated, Recipient, UIManager
from realtime.broker.log_scripts import APPEND
from realtime.eventlog import Durability, EventLog, Retention
from tests.harness import Client, Edge, id_of, unique

pytestmark = pytest.mark.anyio


class ReplyDroppingProxy:
    """A TCP proxy to Redis that, once, forwards a script call and then cuts the connection
    instead of passing back its reply: the worst moment for a client library's retry."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.dropped = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> ReplyDroppingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            armed = threading.Event()
            threading.Thread(target=self._up, args=(client, upstream, armed), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, armed), daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket, armed: threading.Event) -> None:
        while data := _recv(client):
            if b"EVALSHA" in data and not self.dropped.is_set():
                armed.set()
            upstream.sendall(data)
        upstream.close()

    def _down(self, upstream: socket.socket, client: socket.socket, armed: threading.Event) -> None:
        while data := _recv(upstream):
            if armed.is_set() and not self.dropped.is_set():
                self.dropped.set()  # the script ran; its reply never reaches the client
                for sock in (client, upstream):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
                return
            client.sendall(data)
        client.close()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


@pytest.fixture
def through_proxy(redis_server: LocalRedis) -> Iterator[tuple[EventLog, ReplyDroppingProxy]]:
    with ReplyDroppingProxy(redis_server.port) as proxy:
        client = redis.Redis(port=proxy.port, socket_timeout=5)
        client.script_load(APPEND.text)  # so that the first call is the EVALSHA to be cut
        yield EventLog(client, Retention(1000, 3600)), proxy
        client.close()


def test_a_retried_script_whose_reply_was_lost_publishes_once(
    through_proxy: tuple[EventLog, ReplyDroppingProxy], redis_client: redis.Redis
) -> None:
    log, proxy = through_proxy
    recipient = Recipient.user(unique("u"))
    event_id = UIManager(recipient, log).show_toast("Paid", "once", "success")
    assert proxy.dropped.is_set(), "the proxy never cut a reply: the test proved nothing"
    stream = cast(list[tuple[bytes, object]], redis_client.xrange(recipient.stream_key))
    entries = [entry_id.decode() for entry_id, _ in stream]
    assert len(entries) == 1, "published twice"
    assert event_id.endswith(entries[0])


async def test_a_repeated_idempotency_key_returns_the_first_id_and_publishes_nothing(
    edge: Edge, token: Callable[..., str], redis_client: redis.Redis
) -> None:
    user = unique("u")
    client = await Client.connect(edge.ws_url, token(user))
    ui = UIManager.for_user(user)
    first = ui.show_toast("Order created", "Order #1", "success", idempotency_key="order-1")
    again = ui.show_toast("Order created", "Order #1", "success", idempotency_key="order-1")
    other = ui.refresh(idempotency_key="order-2")
    assert again == first
    assert [id_of(f) for f in await client.events(2)] == [first, other]
    assert await client.silent_for(0.3)
    assert redis_client.xlen(Recipient.user(user).stream_key) == 2
    await client.close()


def test_an_idempotency_key_is_one_printable_line() -> None:
    ui = UIManager.for_user(unique("u"))
    for bad in ("", "two words", "x" * 201, "tab\there", "é"):
        with pytest.raises(ValueError, match="idempotency_key"):
            ui.refresh(idempotency_key=bad)


@pytest.fixture
def master_with_a_replica(tmp_path: Path) -> Iterator[tuple[LocalRedis, LocalRedis]]:
    """A Redis and one replica of it, linked and in sync."""
    master = LocalRedis(free_port(), tmp_path / "master").start()
    replica = LocalRedis(free_port(), tmp_path / "replica").start()
    try:
        with redis.Redis.from_url(replica.url) as client:
            client.replicaof("127.0.0.1", master.port)
            deadline = time.monotonic() + 10
            while client.info("replication").get("master_link_status") != "up":
                assert time.monotonic() < deadline, "the replica never linked"
                time.sleep(0.02)
        yield master, replica
    finally:
        replica.stop()
        master.stop()


@pytest.mark.integration  # a Redis and a replica of its own
def test_a_retry_after_not_replicated_waits_for_the_replicas_again(
    master_with_a_replica: tuple[LocalRedis, LocalRedis],
) -> None:
    """EVENTS_MIN_REPLICAS=1 and the replica stops acknowledging: the publish raises
    NotReplicated. Its retry, with the same key, from another process (a fresh connection
    that writes nothing: the key is known) must not report success until the replica holds
    the event; once it does, the retry returns the id of the entry the first call wrote."""
    master, replica = master_with_a_replica
    durability = Durability(min_replicas=1, timeout_ms=200)
    user = Recipient.user(unique("u"))
    first = UIManager(
        user, EventLog(redis.Redis.from_url(master.url), Retention(1000, 3600), durability)
    )
    assert first.refresh(idempotency_key="before")  # the replica acknowledges: fine
    assert replica.process is not None
    os.kill(replica.process.pid, signal.SIGSTOP)  # linked, but acknowledging nothing
    try:
        with pytest.raises(NotReplicated):
            first.refresh(idempotency_key="during")
        retry = UIManager(
            user, EventLog(redis.Redis.from_url(master.url), Retention(1000, 3600), durability)
        )
        with pytest.raises(NotReplicated):
            retry.refresh(idempotency_key="during")
    finally:
        os.kill(replica.process.pid, signal.SIGCONT)
    event_id = retry.refresh(idempotency_key="during")
    with redis.Redis.from_url(master.url) as client:
        assert client.xlen(user.stream_key) == 2  # "before" and "during", once each
        [(entry, _)] = client.xrevrange(user.stream_key, count=1)
    assert event_id.split(".", 1)[1] == entry.decode()  # the entry the failed call wrote
