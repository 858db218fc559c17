"""The asyncio clients' commands packed by hiredis (realtime/broker/command_packing.py) are the
bytes redis-py's own packer makes, for everything the product sends and for what redis-py
refuses; the URL's scheme keeps its kind of connection; and the clients the product makes of
one Redis use it, against a real server."""

from __future__ import annotations

from typing import Any

import pytest
import redis
import redis.asyncio
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection

from cli.local_redis import LocalRedis
from realtime.broker.command_packing import packed_by_hiredis, with_hiredis_packing
from realtime.broker.presence_calls import Entry, Stamp, put
from realtime.broker.topology import async_client, waiting_client
from tests.awkward_ids import SHAPES

PYTHON = Connection()
HIREDIS = packed_by_hiredis(Connection)()


def beat(users: list[str]) -> list[tuple[Any, ...]]:
    """The scripts of a presence heartbeat on one Redis, as EVALSHA commands."""
    entries: dict[Entry, int] = {}
    for n, user in enumerate(users):
        entries[Entry(user)] = n % 3
        entries[Entry(user, business="b1")] = 1
        entries[Entry(user, tab=f"tab-{n}")] = 1
    calls = put(entries, Stamp("edge-1", 7, 30_000), cluster=False)
    return [("EVALSHA", "0" * 40, len(c.keys), *c.keys, *c.args) for c in calls]


COMMANDS: dict[str, tuple[Any, ...]] = {
    "a two-word command name": ("CLIENT SETNAME", "edge-1"),
    "a two-word name in bytes": (b"CLIENT SETNAME", b"edge-1"),
    "numbers": ("SET", "k", 0, -1, 2**63 - 1, 1.5, 0.1, 1e20, -3.25),
    "text beyond ASCII": ("SET", "caf\u00e9", "\u4e2d\u6587", "\U0001f600"),
    "empty and binary values": ("SET", "", b"", b"\x00\xff\r\n"),
    "a memoryview": ("SET", "k", memoryview(b"view")),
    "a value past the packer's buffer": ("SET", "k", "x" * 70_000),
}


@pytest.mark.parametrize("command", COMMANDS.values(), ids=list(COMMANDS))
def test_a_command_packs_to_the_bytes_redis_py_makes(command: tuple[Any, ...]) -> None:
    assert b"".join(HIREDIS.pack_command(*command)) == b"".join(PYTHON.pack_command(*command))


def test_a_heartbeat_of_awkward_ids_packs_to_the_bytes_redis_py_makes() -> None:
    awkward = [shape(f"t{n}") for n, shape in enumerate(SHAPES.values())]
    commands = beat([*awkward, *(f"user-{n}" for n in range(1000))])
    assert sum(len(c) for c in commands) > 10_000
    packed = b"".join(HIREDIS.pack_commands(commands))
    assert packed == b"".join(PYTHON.pack_commands(commands))


@pytest.mark.parametrize("value", [True, None, object()], ids=["bool", "None", "object"])
def test_what_redis_py_refuses_is_refused_the_same_way(value: Any) -> None:
    with pytest.raises(redis.DataError):
        PYTHON.pack_command("SET", "k", value)
    with pytest.raises(redis.DataError):
        HIREDIS.pack_command("SET", "k", value)


def test_a_lone_surrogate_is_refused_as_redis_py_refuses_it() -> None:
    with pytest.raises(UnicodeEncodeError):
        PYTHON.pack_command("SET", "k", "\udc80")
    with pytest.raises(UnicodeEncodeError):
        HIREDIS.pack_command("SET", "k", "\udc80")


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://127.0.0.1:6379/0", Connection),
        ("rediss://127.0.0.1:6379/0", SSLConnection),
        ("unix:///run/redis.sock", UnixDomainSocketConnection),
    ],
)
def test_the_urls_scheme_keeps_its_kind_of_connection(url: str, kind: type[Any]) -> None:
    chosen = with_hiredis_packing(url, {"socket_timeout": 5})
    assert chosen["socket_timeout"] == 5
    assert issubclass(chosen["connection_class"], kind)
    assert chosen["connection_class"] is packed_by_hiredis(kind)  # one class for each


@pytest.mark.anyio
async def test_the_clients_of_one_redis_pack_with_hiredis_and_speak_to_it(
    redis_server: LocalRedis,
) -> None:
    for client in (await async_client(redis_server.url), waiting_client(redis_server.url, 1)):
        assert isinstance(client, redis.asyncio.Redis)  # one Redis, not a cluster
        assert client.connection_pool.connection_class is packed_by_hiredis(Connection)
        big = "v" * 100_000
        await client.set("packing:big", big)
        assert await client.get("packing:big") == big.encode()
        assert await client.client_setname("packing-test")  # "CLIENT SETNAME": two words
        async with client.pipeline(transaction=False) as pipe:
            for n in range(500):
                pipe.set(f"packing:{n}", n)
            assert all(await pipe.execute())
        await client.aclose()
