"""The edge's live feed against a real Redis: a subscription is confirmed exactly when Redis
has it, whatever the order in which connections come and go."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio

from cli.local_redis import LocalRedis
from realtime.broker.redis_live import RedisLiveFeed
from realtime.broker.topology import SingleNode

pytestmark = pytest.mark.anyio


class Listener:
    """The feed's listener, keeping what it was told: messages by channel, channels lost."""

    def __init__(self) -> None:
        self.arrived: dict[bytes, asyncio.Event] = {}
        self.lost: list[set[bytes]] = []

    def on_message(self, channel: bytes, data: bytes) -> None:
        self.arrived.setdefault(channel, asyncio.Event()).set()

    def on_lost(self, channels: set[bytes]) -> None:
        self.lost.append(channels)

    def on_restored(self, channels: set[bytes]) -> None:
        pass


async def test_a_channel_released_and_held_again_at_once_is_confirmed(
    redis_server: LocalRedis,
) -> None:
    """The last connection of a user leaves and a new one arrives in the same instant: the
    subscription never went away, and the newcomer must still be told it is live, and be.
    """
    listener = Listener()
    lost, arrived = listener.lost, listener.arrived
    feed = RedisLiveFeed(SingleNode(redis_server.url), home=redis_server.url)
    feed.start(listener)
    publisher = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        for n in range(20):
            channel = f"insight:{{user:feed-{n}}}:live".encode()
            first = feed.hold(channel)
            assert first is not None
            await asyncio.wait_for(first, 5)
            feed.release(channel)
            again = feed.hold(channel)  # before the feed's connection could unsubscribe
            if again is not None:
                await asyncio.wait_for(again, 5)
            assert feed.hold(channel) is None  # live now: a third holder need not wait
            await publisher.spublish(channel, b"after the re-hold")
            await asyncio.wait_for(arrived.setdefault(channel, asyncio.Event()).wait(), 5)
            feed.release(channel)
            feed.release(channel)
        busy = [f"insight:{{user:busy-{n}}}:live".encode() for n in range(50)]
        waiters = [feed.hold(channel) for channel in busy]  # keeps the connection busy
        feed.release(busy[0])
        regained = feed.hold(busy[0])
        await asyncio.wait_for(
            asyncio.gather(*(w for w in [*waiters[1:], regained] if w is not None)), 5
        )
        assert not lost
    finally:
        await publisher.aclose()
        await feed.close()


async def test_a_channel_released_while_its_subscribe_is_on_its_way_ends_unsubscribed(
    redis_server: LocalRedis,
) -> None:
    """The only connection of a user leaves while the feed's SSUBSCRIBE for its channel is on
    its way: Redis confirms a subscription nobody wants any more, and the feed must take it
    back rather than keep receiving that user's events for as long as it is connected."""
    feed = RedisLiveFeed(SingleNode(redis_server.url), home=redis_server.url)
    feed.start(Listener())
    admin = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        settled = feed.hold(b"insight:{user:in-flight-first}:live")
        assert settled is not None
        await asyncio.wait_for(settled, 5)
        left = []
        for attempt in range(40):  # the release lands at a different moment of the round trip
            channel = f"insight:{{user:in-flight-{attempt}}}:live".encode()
            feed.hold(channel)
            for _ in range(attempt % 8):
                await asyncio.sleep(0)
            feed.release(channel)
            left.append(channel)
        # Held after every release, so its SSUBSCRIBE goes after the SUNSUBSCRIBEs they need,
        # on the same connection: once it is confirmed, Redis has taken those.
        sentinel = feed.hold(b"insight:{user:in-flight-sentinel}:live")
        assert sentinel is not None
        await asyncio.wait_for(sentinel, 5)
        subscribers = dict(await admin.pubsub_shardnumsub(*left))
        assert [channel for channel in left if subscribers[channel]] == []
    finally:
        await admin.aclose()
        await feed.close()
