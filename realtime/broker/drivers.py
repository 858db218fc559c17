"""The two drivers that run a `Call` on the events Redis: one for synchronous code (Celery
tasks, scripts, the API's dependencies), one for asyncio (the edge, the API's routes).

Each knows whether it talks to one Redis or to a cluster, once, from its client. A script goes
straight onto a connection (`realtime.broker.evalsha`); on a cluster, onto the connection of
the master of its slot, skipping redis-py's routing of each call (the producer pays for it in
CPU on every publish, bench/results/publish_cost.md); a slot that moved or a master that went
away sends the call through the cluster client, which follows MOVED and ASK, and the whole
call rides through a slot that is moving (`ride_through`). The client of each master is made
on first use and retired once its node is a master no more (`realtime.broker.master_clients`).
A durable call (EVENTS_MIN_REPLICAS) is followed by WAIT on the script's own connection to the
master, which counts the replicas that have that connection's writes.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, TypeVar, cast

import redis
import redis.asyncio
from redis.commands.core import AsyncScript, Script
from redis.exceptions import NoScriptError

from realtime.broker.call import (
    MASTER_ONLY,
    REDIRECTS,
    Call,
    Durability,
    Lua,
    replicated,
    ride_through,
    ride_through_async,
)
from realtime.broker.evalsha import evalsha, evalsha_async
from realtime.broker.master_clients import MasterClients

T = TypeVar("T")
SyncClient = redis.Redis | redis.RedisCluster
AsyncClient = redis.asyncio.Redis | redis.asyncio.RedisCluster
# A master that went away, or a slot that moved: the cluster client finds the new owner.
_REROUTE = (*REDIRECTS, redis.ConnectionError, redis.TimeoutError)


class SyncDriver:
    """Runs calls from synchronous code, on one Redis or a cluster."""

    def __init__(self, client: SyncClient, durability: Durability = MASTER_ONLY) -> None:
        self.client = client
        self.durability = durability
        self._cluster = client if isinstance(client, redis.RedisCluster) else None
        self._scripts: dict[str, Script] = {}
        self._masters: MasterClients[redis.Redis] = MasterClients()

    def run(self, call: Call[T]) -> T:
        """The call's parsed reply; Redis errors propagate (NotReplicated for a durable
        write too few replicas confirmed)."""
        if call.durable and self.durability.min_replicas:
            return call.parse(ride_through(lambda: self._replicated(call), self._reread_slots))
        return call.parse(ride_through(lambda: self._direct(call)))

    def get(self, key: str) -> bytes | None:
        """A plain GET (a revocation mark)."""
        return cast(bytes | None, self.client.get(key))

    def _script(self, lua: Lua) -> Script:
        script = self._scripts.get(lua.sha)
        if script is None:
            script = self._scripts[lua.sha] = self.client.register_script(lua.text)
        return script

    def _direct(self, call: Call[Any]) -> Any:
        master = self._master_of(call.keys[0])
        if self._cluster is None:
            return evalsha(master, call)
        try:
            return evalsha(master, call)
        except _REROUTE:  # the cluster client: MOVED, ASK
            reply = self._script(call.script)(keys=call.keys, args=call.args)
            self._retire_former_masters()
            return reply

    def _replicated(self, call: Call[Any]) -> Any:
        pipe = self._master_of(call.keys[0]).pipeline(transaction=False)
        self._script(call.script)(keys=call.keys, args=call.args, client=pipe)
        pipe.wait(self.durability.min_replicas, self.durability.timeout_ms)
        reply, replicas = pipe.execute()
        return replicated(reply, replicas, self.durability)

    def _master_of(self, key: str) -> redis.Redis:
        """A client of the master that holds `key`: on a cluster, one connection per master,
        as on one Redis (redis-py's client of a node takes each call's connection from a pool
        and gives it back, a fifth of a publish's CPU)."""
        if self._cluster is None:
            assert isinstance(self.client, redis.Redis)
            return self.client
        node = self._cluster.get_node_from_key(key)  # type: ignore[no-untyped-call]
        master = self._masters.get(node.name)
        if master is None:
            pool = node.redis_connection.connection_pool
            own = redis.ConnectionPool(
                connection_class=pool.connection_class, **pool.connection_kwargs
            )
            master = redis.Redis(connection_pool=own, single_connection_client=True)
            self._masters.add(node.name, master)
            self._retire_former_masters(keep=node.name)
        return master

    def _retire_former_masters(self, keep: str = "") -> None:
        """Retire the clients of nodes the cluster client counts as masters no more (never
        `keep`'s, the master a call is about to use)."""
        assert self._cluster is not None
        primaries = self._cluster.get_primaries()  # type: ignore[no-untyped-call]
        for former in self._masters.retire([keep, *(node.name for node in primaries)]):
            with contextlib.suppress(Exception):
                former.close()
                former.connection_pool.disconnect()  # close() keeps a given pool open

    def _reread_slots(self) -> None:
        if self._cluster is not None:
            self._cluster.nodes_manager.initialize()


class AsyncDriver:
    """Runs calls from asyncio code, on one Redis or a cluster; `run_all` pipelines."""

    def __init__(self, client: AsyncClient, durability: Durability = MASTER_ONLY) -> None:
        self.client = client
        self.durability = durability
        self._cluster = client if isinstance(client, redis.asyncio.RedisCluster) else None
        self._scripts: dict[str, AsyncScript] = {}
        self._masters: MasterClients[redis.asyncio.Redis] = MasterClients()
        self._closing: set[asyncio.Task[None]] = set()  # former masters' clients

    @property
    def cluster(self) -> bool:
        """Whether it talks to a Redis Cluster (a script's keys must then share a slot)."""
        return self._cluster is not None

    async def run(self, call: Call[T]) -> T:
        """`SyncDriver.run` for asyncio."""
        if call.durable and self.durability.min_replicas:
            reply = await ride_through_async(lambda: self._replicated(call), self._reread_slots)
        else:
            reply = await ride_through_async(lambda: self._direct(call))
        return call.parse(reply)

    async def run_all(self, calls: list[Call[T]]) -> list[T]:
        """Every call's reply, in one round trip (per node, on a cluster). A node that does not
        know a script yet (a new master after a failover) is sent it and the calls again."""
        replies = await self._evalsha_all(calls)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            for lua in {calls[i].script.sha: calls[i].script for i in missing}.values():
                await cast(Any, self.client.script_load(lua.text))  # every master
            retried = await self._evalsha_all([calls[i] for i in missing])
            for i, reply in zip(missing, retried, strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return [call.parse(reply) for call, reply in zip(calls, replies, strict=True)]

    async def get(self, key: str) -> bytes | None:
        """A plain GET (a revocation mark)."""
        return cast(bytes | None, await cast(Any, self.client.get(key)))

    async def time(self) -> tuple[int, int]:
        """Redis's clock as (seconds, microseconds); on a cluster, the earliest of its
        masters' clocks, so that no master appends after it with an older id."""
        if self._cluster is None:
            seconds, micros = await cast(Any, self.client.time())
            return int(seconds), int(micros)
        # With several target nodes, redis-py answers {node name: (seconds, micros)}.
        replies = cast(
            dict[str, tuple[int, int]],
            await self._cluster.time(target_nodes=redis.asyncio.RedisCluster.PRIMARIES),
        )
        return min((int(s), int(us)) for s, us in replies.values())

    async def close(self) -> None:
        for master in self._masters.take_all():
            await _close_quietly(master)
        await asyncio.gather(*self._closing, return_exceptions=True)
        await self.client.aclose()

    def _script(self, lua: Lua) -> AsyncScript:
        script = self._scripts.get(lua.sha)
        if script is None:
            script = self._scripts[lua.sha] = self.client.register_script(lua.text)
        return script

    async def _direct(self, call: Call[Any]) -> Any:
        master = self._master_of(call.keys[0])
        if self._cluster is None:
            return await evalsha_async(master, call)
        try:
            return await evalsha_async(master, call)
        except _REROUTE:  # the cluster client: MOVED, ASK
            reply = await self._script(call.script)(keys=call.keys, args=call.args)
            self._retire_former_masters()
            return reply

    async def _replicated(self, call: Call[Any]) -> Any:
        pipe = self._master_of(call.keys[0]).pipeline(transaction=False)
        await self._script(call.script)(keys=call.keys, args=call.args, client=pipe)
        pipe.wait(self.durability.min_replicas, self.durability.timeout_ms)
        reply, replicas = await pipe.execute()
        return replicated(reply, replicas, self.durability)

    async def _evalsha_all(self, calls: list[Call[Any]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for call in calls:
            # Not `pipe.evalsha`, which redis-py refuses in a cluster pipeline: the command
            # itself is routed by its keys (all in one slot) like any other.
            pipe.execute_command("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)
        return list(await pipe.execute(raise_on_error=False))

    def _master_of(self, key: str) -> redis.asyncio.Redis:
        """A client of the master that holds `key`: one per master, made on first use."""
        if self._cluster is None:
            assert isinstance(self.client, redis.asyncio.Redis)
            return self.client
        node = self._cluster.get_node_from_key(key)
        assert node is not None
        master = self._masters.get(node.name)
        if master is None:
            pool = redis.asyncio.ConnectionPool(
                connection_class=node.connection_class, **node.connection_kwargs
            )
            master = redis.asyncio.Redis(connection_pool=pool)
            self._masters.add(node.name, master)
            self._retire_former_masters(keep=node.name)
        return master

    def _retire_former_masters(self, keep: str = "") -> None:
        """`SyncDriver._retire_former_masters`; the clients are closed by a task."""
        assert self._cluster is not None
        primaries = self._cluster.get_primaries()
        for former in self._masters.retire([keep, *(node.name for node in primaries)]):
            closing = asyncio.get_running_loop().create_task(_close_quietly(former))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    async def _reread_slots(self) -> None:
        if self._cluster is not None:
            await self._cluster.nodes_manager.initialize()


async def _close_quietly(client: redis.asyncio.Redis) -> None:
    with contextlib.suppress(Exception):
        await client.aclose(close_connection_pool=True)  # a given pool stays open otherwise
