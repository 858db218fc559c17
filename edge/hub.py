"""The edge process's routing table: which local connections listen as which recipient.

A recipient's live channel is subscribed while at least one local connection listens as it
(subscribe on the first, unsubscribe on the last), so an edge process receives only the
events of the users connected to it. Every message is parsed once per process and offered
to each addressed connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

from core.security import issued_before
from edge import telemetry
from edge.catch_up import Reads, catch_up
from edge.close_codes import CloseCode
from edge.connection import ClientConnection
from edge.listeners import Listener, Listeners
from realtime.broker import LiveFeed, LogStore
from realtime.frames import REVOKE_EVENT_ID, parse_announcement, parse_event_id
from realtime.recipients import Recipient

REVOKE_ID = REVOKE_EVENT_ID.encode()

logger = logging.getLogger(__name__)

PAGE_READS = 64  # page reads in flight at once (see edge.catch_up.Reads)
BULK_READS = 2  # of them, pages of big logs, after a resume's first round


class SubscribeTimeout(Exception):
    """Redis did not confirm the subscriptions in time (unreachable or overloaded)."""


class Hub:
    """Connections by live channel, fed by the live feed (the hub is its `Listener`), resynced
    from the log store after outages. Both are the broker's (`realtime.broker`), given."""

    def __init__(
        self,
        log: LogStore,
        feed: LiveFeed,
        *,
        subscribe_timeout: float,
        replay_budget: int,
    ) -> None:
        self.log = log
        self.feed = feed
        self._subscribe_timeout = subscribe_timeout
        self._replay_budget = replay_budget
        self._reads = Reads(asyncio.Semaphore(PAGE_READS), asyncio.Semaphore(BULK_READS))
        self._listeners = Listeners()
        self.connections: set[ClientConnection] = set()
        self.revoked: set[ClientConnection] = set()  # closed by a revocation (4401 revoked)
        self._resyncs: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.feed.start(self)

    async def stop(self) -> None:
        for resync in list(self._resyncs):
            resync.cancel()
        await asyncio.gather(*self._resyncs, return_exceptions=True)

    async def listen(self, connection: ClientConnection) -> None:
        """Route the connection's recipients to it, once Redis confirms their channels; live
        events are held until `catch_up`. The caller must `detach` it afterwards."""
        self.connections.add(connection)
        waiters = []
        for index, recipient in enumerate(connection.recipients):
            channel = recipient.live_channel.encode()
            self._listeners.add(channel, connection, index)
            waiter = self.feed.hold(channel)
            if waiter is not None:
                waiters.append(asyncio.shield(waiter))
        if waiters:
            try:
                async with asyncio.timeout(self._subscribe_timeout):
                    await asyncio.gather(*waiters)
            except TimeoutError as error:
                raise SubscribeTimeout from error

    def detach(self, connection: ClientConnection) -> None:
        """Forget the connection; channels nobody else listens to are unsubscribed."""
        if connection not in self.connections:
            return
        self.connections.discard(connection)
        self.revoked.discard(connection)
        for recipient in connection.recipients:
            channel = recipient.live_channel.encode()
            self._listeners.remove(channel, connection)
            self.feed.release(channel)

    async def catch_up(self, connection: ClientConnection, *, announce: bool = False) -> None:
        """Replay the logs after the connection's positions, then let live events through
        (see `edge.catch_up`: paged, and never more than WS_REPLAY_MAX_BYTES held)."""
        outcome = await catch_up(
            connection,
            self.log,
            budget=self._replay_budget,
            announce=announce,
            read_timeout=self._subscribe_timeout,
            reads=self._reads,
        )
        telemetry.REPLAYS.inc()
        telemetry.REPLAYED.inc(outcome.replayed)
        if outcome.gap:
            telemetry.GAPS.inc()

    def close_all(self, code: CloseCode) -> None:
        for connection in list(self.connections):
            connection.close(code)

    def revoke(self, user_id: str, mark: int) -> None:
        """Close the user's connections here whose tokens the mark refuses (4401 revoked)."""
        listeners = self._listeners.on(Recipient.user(user_id).live_channel.encode())
        if listeners:
            self._revoke(listeners, mark)

    def close_revoked(self, connection: ClientConnection) -> None:
        self.revoked.add(connection)
        connection.close(CloseCode.UNAUTHORIZED)

    def _revoke(self, listeners: Collection[Listener], mark: int) -> None:
        closed = 0
        for connection, index in list(listeners):
            # index 0: listening as that user (the user's channel is nobody else's)
            if index == 0 and issued_before(connection.identity, mark):
                self.close_revoked(connection)
                closed += 1
        if closed:
            logger.info(
                "websockets revoked",
                extra={"user_id": connection.identity.user_id, "count": closed, "mark": mark},
            )

    # -- what the live feed tells (realtime.broker.Listener) ------------------------------

    def on_message(self, channel: bytes, data: bytes) -> None:
        listeners = self._listeners.on(channel)
        if not listeners:
            return
        coalesce_key, event_id, tab, body = parse_announcement(data)
        event = parse_event_id(event_id.decode("latin-1"))  # never fails; an id is ASCII
        if event is None:
            # Not an event: a control announcement (an id no event has), costing the
            # delivery path nothing, or garbage.
            if event_id == REVOKE_ID and body.isdigit():
                self._revoke(listeners, int(body))
                return
            logger.warning(
                "an announcement without an event id",
                extra={"channel": channel.decode(errors="replace")},
            )
            return
        if tab:  # for one tab of the user (`realtime.broker.log_calls`): its connections only
            client = tab.decode(errors="replace")
            listeners = [(c, i) for c, i in listeners if c.client == client]
        for connection, index in listeners:
            connection.offer(index, event, event_id, coalesce_key, body)
        telemetry.record_delivery(body, event, len(listeners))

    def on_lost(self, channels: set[bytes]) -> None:
        """These channels stopped flowing: their connections wait for a catch-up."""
        for connection in self._listeners.connections(channels):
            connection.hold_live_events()

    def on_restored(self, channels: set[bytes]) -> None:
        """Replay, for each connection of these channels, what was published meanwhile."""
        task = asyncio.get_running_loop().create_task(
            self._resync(list(self._listeners.connections(channels)))
        )
        self._resyncs.add(task)
        task.add_done_callback(self._resyncs.discard)

    async def _resync(self, connections: list[ClientConnection]) -> None:
        async def one(connection: ClientConnection) -> None:
            try:
                await self.catch_up(connection)
            except Exception:
                logger.exception("resync failed; closing the connection so it resumes")
                connection.close(CloseCode.TRY_AGAIN_LATER)

        await asyncio.gather(*(one(c) for c in connections))
        logger.info("resynced connections from the logs", extra={"count": len(connections)})

    @property
    def count(self) -> int:
        return len(self.connections)
