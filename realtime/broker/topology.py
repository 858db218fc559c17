"""Where the events live: one Redis, or a Redis Cluster, found out by asking it.

`EVENTS_REDIS_URL` may name a single server or any node of a cluster (Redis or Valkey 7 or
newer); every process of Insight (the edge, the publishers, the API, the CLI) asks the node
(`INFO cluster`: `cluster_enabled:1`) and builds a redis-py client of the right kind, so no
other setting is needed. The edge also reads which master owns each live channel from here.

A client of one Redis retries a call once, on a new connection, when its connection turns out
to be dead (redis-py's `from_url` retries nothing unless told): after a Redis restart, the
first call on each pooled connection would otherwise fail. Every write Insight makes is safe
to repeat (an append carries its idempotency key, presence writes are absolute).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.retry
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.crc import key_slot

from realtime.broker.command_packing import with_hiredis_packing

_async_answers: dict[str, bool] = {}


def _enabled(info: dict[str, Any]) -> bool:
    return str(info.get("cluster_enabled", "0")) == "1"


@lru_cache(maxsize=8)
def is_cluster(url: str) -> bool:
    """Whether `url` names a node of a Redis Cluster. Raises redis.RedisError when the node
    does not answer (nothing is remembered then: the next call asks again)."""
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        return _enabled(client.info("cluster"))
    finally:
        client.close()


async def is_cluster_async(url: str) -> bool:
    """`is_cluster` for asyncio code."""
    if url not in _async_answers:
        client = redis.asyncio.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        try:
            _async_answers[url] = _enabled(await client.info("cluster"))
        finally:
            await client.aclose()
    return _async_answers[url]


def sync_client(url: str, **options: Any) -> redis.Redis | redis.RedisCluster:
    """A client for the events Redis at `url`, of the kind it is."""
    if is_cluster(url):
        options.pop("single_connection_client", None)  # a cluster client pools per node
        return redis.RedisCluster.from_url(url, **options)
    options.setdefault("retry", redis.retry.Retry(NoBackoff(), 1, (redis.ConnectionError,)))
    return redis.Redis.from_url(url, **options)


async def async_client(
    url: str, *, wait_for_connection: float | None = None, **options: Any
) -> redis.asyncio.Redis | redis.asyncio.RedisCluster:
    """The asyncio twin of `sync_client` (a cluster client has read the slot map).

    redis-py refuses a call at once when its pool holds `max_connections` (100 by default)
    busy connections. With `wait_for_connection`, a call on one Redis waits up to that many
    seconds for one instead (a cluster client keeps refusing past its per-node bound)."""
    if await is_cluster_async(url):
        cluster = redis.asyncio.RedisCluster.from_url(url, **options)
        await cluster.initialize()
        return cluster
    options.setdefault("retry", AsyncRetry(NoBackoff(), 1, (redis.ConnectionError,)))
    if wait_for_connection is None:
        return redis.asyncio.Redis.from_url(url, **with_hiredis_packing(url, options))
    return waiting_client(url, wait_for_connection, **options)


def waiting_client(url: str, wait: float, **options: Any) -> redis.asyncio.Redis:
    """An asyncio client of the one Redis at `url` whose calls past `max_connections` busy
    connections wait up to `wait` seconds for one (then raise ConnectionError)."""
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url, timeout=wait, **with_hiredis_packing(url, options)
    )
    return redis.asyncio.Redis.from_pool(pool)


class Topology(Protocol):
    """Which node serves a channel, and a way to learn that it changed."""

    def owner(self, channel: bytes) -> str:
        """The URL of the node to subscribe to `channel` on."""
        ...

    async def refresh(self) -> None:
        """Read the topology again (after a failover, a migration, a MOVED)."""
        ...


class SingleNode:
    """One Redis: every channel is on it, and it never moves."""

    def __init__(self, url: str) -> None:
        self.url = url

    def owner(self, channel: bytes) -> str:
        return self.url

    async def refresh(self) -> None:
        return None


class ClusterTopology:
    """A Redis Cluster's slot map, as redis-py's cluster client keeps it."""

    def __init__(self, client: redis.asyncio.RedisCluster, url: str) -> None:
        self._client = client
        self._url = urlsplit(url)

    def owner(self, channel: bytes) -> str:
        node = self._client.nodes_manager.get_node_from_slot(key_slot(channel))
        return self._node_url(node.host, node.port)

    async def refresh(self) -> None:
        await self._client.nodes_manager.initialize()

    def _node_url(self, host: str, port: str | int) -> str:
        """The node's URL with the configured one's scheme and credentials."""
        credentials, _, _ = self._url.netloc.rpartition("@")
        netloc = f"{credentials}@{host}:{port}" if credentials else f"{host}:{port}"
        return urlunsplit((self._url.scheme, netloc, "", "", ""))
