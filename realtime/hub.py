"""The edge process's routing table: which local connections listen as which recipient.

A recipient's live channel is subscribed while at least one local connection listens as it
(subscribe on the first, unsubscribe on the last), so an edge process receives only the
events of the users connected to it. Every message is parsed once per process and appended
to each addressed connection's buffer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from realtime import metrics
from realtime.connection import ClientConnection
from realtime.eventlog import AsyncEventLog, frame_id
from realtime.protocol import CloseCode
from realtime.subscriber import PubSubConnection
from realtime.wire import text_frame

logger = logging.getLogger(__name__)


class SubscribeTimeout(Exception):
    """Redis did not confirm the subscriptions in time (unreachable or overloaded)."""


class Hub:
    """Connections by live channel, fed by one pub/sub connection, resynced after outages."""

    def __init__(
        self,
        redis_url: str,
        log: AsyncEventLog,
        *,
        subscribe_timeout: float,
        ping_interval: float,
    ) -> None:
        self.log = log
        self._subscribe_timeout = subscribe_timeout
        self._by_channel: dict[bytes, set[ClientConnection]] = {}
        self.connections: set[ClientConnection] = set()
        self.pubsub = PubSubConnection(
            redis_url,
            self._on_message,
            on_lost=self._on_redis_lost,
            on_restored=self._on_redis_restored,
            ping_interval=ping_interval,
        )

    async def start(self) -> None:
        self.pubsub.start()

    async def stop(self) -> None:
        await self.pubsub.close()

    async def attach(self, connection: ClientConnection) -> None:
        """Route the connection's recipients to it and catch it up from its cursor.

        The caller must `detach` the connection afterwards, whether or not this succeeded.
        """
        self.connections.add(connection)
        waiters = []
        for recipient in connection.recipients:
            channel = recipient.live_channel.encode()
            self._by_channel.setdefault(channel, set()).add(connection)
            waiter = self.pubsub.hold(channel)
            if waiter is not None:
                waiters.append(asyncio.shield(waiter))
        if waiters:
            try:
                async with asyncio.timeout(self._subscribe_timeout):
                    await asyncio.gather(*waiters)
            except TimeoutError as error:
                raise SubscribeTimeout from error
        await self.catch_up(connection, announce=True)

    def detach(self, connection: ClientConnection) -> None:
        """Forget the connection; channels nobody else listens to are unsubscribed."""
        if connection not in self.connections:
            return
        self.connections.discard(connection)
        for recipient in connection.recipients:
            channel = recipient.live_channel.encode()
            listeners = self._by_channel.get(channel)
            if listeners is not None:
                listeners.discard(connection)
                if not listeners:
                    del self._by_channel[channel]
            self.pubsub.release(channel)

    async def catch_up(self, connection: ClientConnection, *, announce: bool = False) -> None:
        """Replay the log after the connection's cursor, then let live events through."""
        async with connection.catch_up_lock:
            connection.hold_live_events()
            replay = await self.log.replay(connection.recipients, connection.cursor)
            connection.resume_from(replay, announce=announce)
        metrics.REPLAYS.inc()
        metrics.REPLAYED.inc(len(replay.frames))
        if replay.gap:
            metrics.GAPS.inc()

    def close_all(self, code: CloseCode) -> None:
        for connection in list(self.connections):
            connection.close(code)

    # -- pub/sub callbacks --------------------------------------------------------------

    def _on_message(self, channel: bytes, data: bytes) -> None:
        listeners = self._by_channel.get(channel)
        if not listeners:
            return
        key, _, payload = data.partition(b"\n")
        coalesce_key = key.decode()
        frame = payload.decode()
        encoded = text_frame(payload)
        event_id = frame_id(frame)
        for connection in listeners:
            connection.offer(event_id, frame, coalesce_key, encoded)
        metrics.record_delivery(frame, event_id, len(listeners))

    def _on_redis_lost(self) -> None:
        for connection in self.connections:
            connection.hold_live_events()

    async def _on_redis_restored(self) -> None:
        """Replay, for every connection, what was published while the edge was away."""
        await self._resync(list(self.connections))

    async def _resync(self, connections: Iterable[ClientConnection]) -> None:
        semaphore = asyncio.Semaphore(64)

        async def one(connection: ClientConnection) -> None:
            async with semaphore:
                try:
                    await self.catch_up(connection)
                except Exception:
                    logger.exception("resync failed; closing the connection so it resumes")
                    connection.close(CloseCode.TRY_AGAIN_LATER)

        await asyncio.gather(*(one(c) for c in connections))
        logger.info("resynced connections after redis reconnect", extra={"count": self.count})

    @property
    def count(self) -> int:
        return len(self.connections)
