"""The edge's delivery engine: the hub and this edge's presence, over one broker.

The broker (Redis by default, `realtime.broker.redis_broker`; any `realtime.broker.Broker`
given, such as the in-memory one in tests) may not answer at start (not up yet, or a wrong
password): the edge then serves its probes, reports itself unready and refuses sockets with
1013, and keeps trying, with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import redis
from prometheus_client import REGISTRY

from core.config import Settings
from edge.close_codes import CloseCode
from edge.hub import Hub
from edge.hub_metrics import HubCollector
from edge.presence import Presence
from realtime.broker import Broker
from realtime.broker.redis_broker import RedisBroker

logger = logging.getLogger(__name__)

BrokerFactory = Callable[[Settings], Awaitable[Broker]]


async def redis_broker(settings: Settings) -> Broker:
    """The broker over the events Redis (EVENTS_REDIS_URL: one server or a cluster)."""
    return await RedisBroker.connect(
        settings.events_url,
        settings.retention,
        wait_for_pool=settings.ws_subscribe_timeout_seconds,
        pubsub_ping_interval=settings.pubsub_ping_interval_seconds,
    )


class Engine:
    """The hub and presence, once the broker answers."""

    def __init__(self, settings: Settings, connect: BrokerFactory = redis_broker) -> None:
        self.settings = settings
        self._connect = connect
        self.broker: Broker | None = None
        self.hub: Hub | None = None
        self.presence: Presence | None = None
        self._collector: HubCollector | None = None

    async def start(self) -> None:
        """Connect (retrying with backoff until the broker answers), then start delivering."""
        delay = 0.05
        while True:
            try:
                broker = await self._connect(self.settings)
            except redis.AuthenticationError as error:
                logger.warning("redis AUTH failed", extra={"error": str(error)})
            except (redis.RedisError, OSError) as error:
                logger.warning("events redis unavailable", extra={"error": str(error)})
            else:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        hub = Hub(
            broker.log,
            broker.live,
            subscribe_timeout=self.settings.ws_subscribe_timeout_seconds,
            replay_budget=self.settings.ws_replay_max_bytes,
        )
        self._collector = HubCollector(hub)
        REGISTRY.register(self._collector)
        await hub.start()
        presence = Presence(
            broker.presence,
            ttl_seconds=self.settings.presence_ttl_seconds,
            max_per_user=self.settings.ws_max_connections_per_user,
            on_revoked=hub.revoke,
        )
        presence.start()
        self.broker, self.hub, self.presence = broker, hub, presence

    async def stop(self) -> None:
        if self._collector is not None:
            REGISTRY.unregister(self._collector)
        if self.hub is not None:
            self.hub.close_all(CloseCode.SERVER_RESTARTING)
        if self.presence is not None:
            await self.presence.stop()
        if self.hub is not None:
            await self.hub.stop()
        if self.broker is not None:
            await self.broker.close()
