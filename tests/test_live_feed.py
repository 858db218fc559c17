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


async def test_a_channel_released_and_held_again_at_once_is_confirmed(
    redis_server: LocalRedis,
) -> None:
    """The last connection of a user leaves and a new one arrives in the same instant: the
    subscription never went away, and the newcomer must still be told it is live, and be.
    """
    lost: list[set[bytes]] = []
    arrived: dict[bytes, asyncio.Event] = {}

    class Listener:
        def on_message(self, channel: bytes, data: bytes) -> None:
            arrived.setdefault(channel, asyncio.Event()).set()

        def on_lost(self, channels: set[bytes]) -> None:
            lost.append(channels)

        def on_restored(self, channels: set[bytes]) -> None:
            pass

    feed = RedisLiveFeed(SingleNode(redis_server.url), home=redis_server.url)
    feed.start(Listener())
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
