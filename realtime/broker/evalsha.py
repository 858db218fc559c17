"""EVALSHA on a redis-py client's own connection, without its per-command layers.

Every publish is one EVALSHA. Through `Script.__call__`, redis-py 8 spends more CPU around the
command than on it: `execute_command`'s retry closure, its failure callback, the observability
records of each call's duration, the response callbacks, and the `Script` object's own
dispatch. Here the command is packed and sent on the client's connection, its reply read, and
only what Insight relies on is kept: the client's lock (a single-connection client is shared
by threads), its pool otherwise, its health check (`send_command` does it), one new
connection when the old one turns out dead (`realtime.broker.topology` asks the same of the
client), and the script's text sent to a server that does not know it yet (a restarted
Redis, a new master after a failover). The figures are in docs/benchmarks.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import redis
import redis.asyncio
from redis.exceptions import NoScriptError

from realtime.broker.call import Call


def evalsha(client: redis.Redis, call: Call[Any]) -> Any:
    """The call's raw reply, from the client's connection (its pool's, if it has no own)."""
    conn = client.connection
    if conn is not None:
        with client.single_connection_lock:
            return _run(conn, call)
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        return _run(conn, call)
    finally:
        pool.release(conn)


def _run(conn: redis.connection.AbstractConnection, call: Call[Any]) -> Any:
    try:
        return _send(conn, call)
    except redis.ConnectionError:
        conn.disconnect()  # type: ignore[no-untyped-call]  # dead (a Redis restart): anew
        return _send(conn, call)


def _send(conn: redis.connection.AbstractConnection, call: Call[Any]) -> Any:
    script = call.script
    send = cast(Callable[..., None], conn.send_command)  # untyped in redis-py
    try:
        send("EVALSHA", script.sha, len(call.keys), *call.keys, *call.args)
        return conn.read_response()
    except NoScriptError:
        send("SCRIPT", "LOAD", script.text)
        conn.read_response()
        send("EVALSHA", script.sha, len(call.keys), *call.keys, *call.args)
        return conn.read_response()


async def evalsha_async(client: redis.asyncio.Redis, call: Call[Any]) -> Any:
    """`evalsha` for asyncio code, on a connection of the client's pool (Insight's asyncio
    clients pool their connections: an event loop runs many calls at once).

    A connection a call leaves fit for another is kept by `_Idle` for the next call, rather
    than handed back to the pool and taken from it again."""
    pool = client.connection_pool
    idle = _Idle.of(pool)
    conn = idle.take()
    if conn is None:
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        reply = await _run_async(conn, call)
    except BaseException:  # maybe mid-reply (a cancel, a timeout): the pool checks it
        await pool.release(conn)
        raise
    if not idle.keep(conn):
        await pool.release(conn)
    return reply


class _Idle:
    """The connections of one pool that calls have left idle, taken again by the next call.

    The pool's own checkout and return are the dearest part of a call in this process: a
    lock, a condition, a timeout, a check that nothing is left to read, and the library's
    observability records each way (bench/results/design-figures.md). A connection kept here
    has just read its reply in full and is still connected, so it holds nothing to read; it
    stays the pool's, counted in use, so the pool's close closes it too, and a dead one is
    found by the call's send (`_run_async` connects it anew) as at any other moment. At most
    MOST wait here (a quarter of a small pool), and the pool's bound is raised by as many, so
    its other callers are never starved."""

    __slots__ = ("connections", "most")
    MOST = 4

    def __init__(self, most: int) -> None:
        self.connections: list[redis.asyncio.connection.AbstractConnection] = []
        self.most = most

    @classmethod
    def of(cls, pool: redis.asyncio.ConnectionPool) -> _Idle:
        idle = getattr(pool, _ATTRIBUTE, None)
        if idle is None:  # kept on the pool, for its lifetime (its connections refer to it)
            idle = cls(min(cls.MOST, pool.max_connections // 4))
            # The pool counts a kept connection in use: the kept come on top of its bound,
            # so that its other callers still have every connection it was made with.
            pool.max_connections += idle.most
            setattr(pool, _ATTRIBUTE, idle)
        return cast(_Idle, idle)

    def take(self) -> redis.asyncio.connection.AbstractConnection | None:
        return self.connections.pop() if self.connections else None

    def keep(self, conn: redis.asyncio.connection.AbstractConnection) -> bool:
        """Whether `conn` is kept for the next call (else the caller returns it to the pool)."""
        if len(self.connections) >= self.most or not conn.is_connected:
            return False
        self.connections.append(conn)
        return True


async def _run_async(conn: redis.asyncio.connection.AbstractConnection, call: Call[Any]) -> Any:
    try:
        return await _send_async(conn, call)
    except redis.ConnectionError:
        await conn.disconnect()
        return await _send_async(conn, call)


async def _send_async(conn: redis.asyncio.connection.AbstractConnection, call: Call[Any]) -> Any:
    script = call.script
    try:
        await conn.send_command("EVALSHA", script.sha, len(call.keys), *call.keys, *call.args)
        return await conn.read_response()
    except NoScriptError:
        await conn.send_command("SCRIPT", "LOAD", script.text)
        await conn.read_response()
        await conn.send_command("EVALSHA", script.sha, len(call.keys), *call.keys, *call.args)
        return await conn.read_response()


_ATTRIBUTE = "_insight_idle"  # where a pool keeps its _Idle
