"""The edge's live channels: reference-counted subscriptions, each held on the node that owns
its hash slot, and followed when that changes.

On one Redis every channel is on the one node. On a cluster a channel lives on the master
of its slot, so the feed keeps one `NodeSubscriptions` per master it needs, and follows the
topology without a restart: when a node's connection is lost (a master killed), when Redis
drops a channel itself (its slot migrated away, or a planned failover), or when it refuses
one (`MOVED`, `ASK`: our map is stale), the feed re-reads the slot map and subscribes each
affected channel on its owner now. Channels that stopped flowing are reported lost and, once
subscribed again, restored: the hub holds their connections' live events meanwhile and then
catches them up from the logs, so nothing published during the switch is missed.

It is the Redis `LiveFeed` of the broker seam (`realtime.broker`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import redis
from redis.exceptions import SlotNotCoveredError

from realtime.broker import Listener
from realtime.broker.pubsub_node import NodeSubscriptions, OnChannels
from realtime.broker.topology import Topology

logger = logging.getLogger(__name__)


class RedisLiveFeed:
    """Subscriptions to live channels across the nodes that own them (a `LiveFeed`)."""

    def __init__(
        self, topology: Topology, *, ping_interval: float = 5.0, home: str | None = None
    ) -> None:
        self._topology = topology
        self._listener: Listener | None = None
        self._ping_interval = ping_interval
        self._home = home  # a node kept connected while idle (one Redis: readiness)
        self._refcount: dict[bytes, int] = {}
        self._route: dict[bytes, str] = {}  # channel -> the node it is wanted on
        self._nodes: dict[str, NodeSubscriptions] = {}
        self._waiters: dict[bytes, asyncio.Future[None]] = {}
        self._live: set[bytes] = set()  # confirmed on the node that owns it
        self._interrupted: set[bytes] = set()  # stopped flowing; restored once confirmed
        self._following: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    # -- the hub's side ---------------------------------------------------------------

    def start(self, listener: Listener) -> None:
        self._listener = listener
        if self._home is not None:
            self._node(self._home)

    async def close(self) -> None:
        if self._following is not None:
            self._following.cancel()
        for node in list(self._nodes.values()):
            await node.close()
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError("live feed closed"))

    def hold(self, channel: bytes) -> asyncio.Future[None] | None:
        """Hold a subscription to `channel`; await the returned future (if any) for Redis to
        confirm it. The hold counts at once, so a caller that gives up must still release."""
        self._refcount[channel] = self._refcount.get(channel, 0) + 1
        if channel in self._live:
            return None
        waiter = self._waiters.get(channel)
        if waiter is None:
            waiter = self._waiters[channel] = asyncio.get_running_loop().create_future()
        if channel not in self._route:
            self._subscribe(channel)
        return waiter

    def release(self, channel: bytes) -> None:
        """Drop one hold on `channel`; the last one out unsubscribes."""
        count = self._refcount.get(channel, 0) - 1
        if count > 0:
            self._refcount[channel] = count
            return
        self._refcount.pop(channel, None)
        self._live.discard(channel)
        self._interrupted.discard(channel)
        waiter = self._waiters.pop(channel, None)
        if waiter is not None and not waiter.done():
            waiter.cancel()
        url = self._route.pop(channel, None)
        if url is not None and url in self._nodes:
            self._nodes[url].drop(channel)
            self._close_if_idle(url)

    @property
    def healthy(self) -> bool:
        """Every node the feed needs is connected and every channel is routed."""
        return all(node.connected.is_set() for node in self._nodes.values()) and len(
            self._route
        ) == len(self._refcount)

    @property
    def channel_count(self) -> int:
        return len(self._live)

    @property
    def reconnects(self) -> int:
        return sum(node.reconnects for node in self._nodes.values())

    # -- routing ----------------------------------------------------------------------

    def _subscribe(self, channel: bytes) -> bool:
        """Want `channel` on the node that owns it now; False if no node does (yet)."""
        try:
            url = self._topology.owner(channel)
        except SlotNotCoveredError:
            self._follow()
            return False
        self._route[channel] = url
        self._node(url).want(channel)
        return True

    def _node(self, url: str) -> NodeSubscriptions:
        node = self._nodes.get(url)
        if node is None:
            assert self._listener is not None, "start the feed first"
            node = self._nodes[url] = NodeSubscriptions(
                url,
                self._listener.on_message,
                on_confirmed=self._confirmed_by(url),
                on_lost=self._lost_by(url),
                on_dropped=self._dropped_by(url),
                on_refused=self._refused_by(url),
                ping_interval=self._ping_interval,
            )
            node.start()
        return node

    def _close_if_idle(self, url: str) -> None:
        node = self._nodes.get(url)
        if node is None or not node.idle or url == self._home:
            return
        del self._nodes[url]
        task = asyncio.get_running_loop().create_task(node.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _interrupt(self, channels: set[bytes]) -> None:
        stopped = channels & self._live
        self._live -= stopped
        self._interrupted |= stopped
        if stopped and self._listener is not None:
            self._listener.on_lost(stopped)

    # -- what the nodes report ----------------------------------------------------------

    def _confirmed_by(self, url: str) -> OnChannels:
        def confirmed(channels: set[bytes]) -> None:
            mine = {c for c in channels if self._route.get(c) == url}
            self._live |= mine
            for channel in mine:
                waiter = self._waiters.pop(channel, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            restored = mine & self._interrupted
            if restored and self._listener is not None:
                self._interrupted -= restored
                self._listener.on_restored(restored)

        return confirmed

    def _lost_by(self, url: str) -> OnChannels:
        def lost(channels: set[bytes]) -> None:
            self._interrupt({c for c in channels if self._route.get(c) == url})
            self._follow()  # the node may be gone for good: its slots may have a new owner

        return lost

    def _dropped_by(self, url: str) -> OnChannels:
        def dropped(channels: set[bytes]) -> None:
            logger.info("redis moved live channels away", extra={"count": len(channels)})
            self._unroute(url, channels)

        return dropped

    def _refused_by(self, url: str) -> Callable[[set[bytes], str], None]:
        def refused(channels: set[bytes], error: str) -> None:
            if not error.startswith(("MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN")):
                logger.error("redis refused live channels", extra={"error": error})
            self._unroute(url, channels)

        return refused

    def _unroute(self, url: str, channels: set[bytes]) -> None:
        mine = {c for c in channels if self._route.get(c) == url}
        self._interrupt(mine)
        for channel in mine:
            del self._route[channel]
            if url in self._nodes:
                self._nodes[url].drop(channel)
        self._close_if_idle(url)
        self._follow()

    # -- following the topology ---------------------------------------------------------

    def _follow(self) -> None:
        if self._following is None or self._following.done():
            self._following = asyncio.get_running_loop().create_task(
                self._follow_until_settled(), name="live-feed-topology"
            )

    async def _follow_until_settled(self) -> None:
        """Re-read the topology and move channels to their owners, until every channel is
        routed to a connected node (a failover takes the cluster a few seconds)."""
        delay = 0.02
        while True:
            try:
                await self._topology.refresh()
            except (redis.RedisError, OSError) as error:
                logger.warning("reading the redis topology failed", extra={"error": str(error)})
            else:
                self._reroute()
                if self.healthy:
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _reroute(self) -> None:
        for channel in list(self._refcount):
            try:
                owner = self._topology.owner(channel)
            except SlotNotCoveredError:
                continue
            current = self._route.get(channel)
            if current == owner:
                continue
            if current is not None:
                self._interrupt({channel})
                del self._route[channel]
                if current in self._nodes:
                    self._nodes[current].drop(channel)
                    self._close_if_idle(current)
            self._subscribe(channel)
        for url in list(self._nodes):
            self._close_if_idle(url)
