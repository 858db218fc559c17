"""One self-healing sharded pub/sub connection to one Redis node, shared by every WebSocket
of the edge whose channels that node owns.

Why not redis-py's PubSub: the edge must know exactly when an SSUBSCRIBE has taken effect (to
read the log only after it, so replay and live traffic meet without a gap), must survive
subscribe/unsubscribe storms from hundreds of concurrent connects, and must learn of every
reconnect, of every channel the server drops (a slot migrated away: Redis pushes
`sunsubscribe`) and of every channel it refuses (`-MOVED`: another node owns the slot now),
so that the live feed can move those channels and resync their connections from the logs.
So the protocol is driven here directly: an asyncio protocol parses what Redis sends with
hiredis as it arrives and hands each message to the hub from the transport's callback, no
reader task to wake per message (`realtime.broker.pubsub_connection`), and one control task
sends subscription changes, one command per hash slot, all at once, and matches Redis's
replies to them in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from time import monotonic
from urllib.parse import unquote, urlsplit

import hiredis
from redis.crc import key_slot

from realtime.broker.pubsub_connection import PubSubConnection, resp_command

logger = logging.getLogger(__name__)

OnMessage = Callable[[bytes, bytes], None]
OnChannels = Callable[[set[bytes]], None]
OnRefused = Callable[[set[bytes], str], None]
CONFIRM_TIMEOUT_SECONDS = 10.0


@dataclass
class _Pending:
    """A command sent and not yet answered in full: one reply per channel, or one error."""

    verb: bytes
    channels: deque[bytes]  # still to be confirmed, in the order Redis answers
    group: list[bytes] = field(default_factory=list)
    done: bool = False
    refused: bool = False


class NodeSubscriptions:
    """The channels wanted from one node, kept subscribed across reconnects.

    Tells its owner, through callbacks, when channels are confirmed (after a reconnect, all
    of them again), when the connection is lost (every channel stops flowing), when the
    server drops a channel itself, and when it refuses channels (with Redis's error).
    """

    def __init__(
        self,
        url: str,
        on_message: OnMessage,
        *,
        on_confirmed: OnChannels,
        on_lost: OnChannels,
        on_dropped: OnChannels,
        on_refused: OnRefused,
        ping_interval: float = 5.0,
    ) -> None:
        self.url = url
        self._on_message = on_message
        self._on_confirmed = on_confirmed
        self._on_lost = on_lost
        self._on_dropped = on_dropped
        self._on_refused = on_refused
        self._ping_interval = ping_interval
        self._last_heard = 0.0
        self.wanted: set[bytes] = set()
        self.active: set[bytes] = set()  # subscribed at Redis on the current connection
        # Channels wanted or dropped since the control task last looked: what it compares,
        # rather than all of `wanted` against all of `active` (at tens of thousands of
        # channels, that comparison on every connect was most of a connect's CPU).
        self._changed: set[bytes] = set()
        self._outstanding: deque[_Pending] = deque()
        self._answered = asyncio.Event()
        self._dirty = asyncio.Event()
        self._redis: PubSubConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.reconnects = 0

    # -- public API -------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"pubsub {self.url_for_logs}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def want(self, channel: bytes) -> None:
        """Subscribe to `channel` (at once if connected, else on connecting). A channel still
        subscribed (dropped and wanted again before the control task noticed) is confirmed
        at once: no command will be sent, so no reply would confirm it."""
        if channel in self.wanted:
            return
        self.wanted.add(channel)
        if channel in self.active:
            self._on_confirmed({channel})
        else:
            self._changed.add(channel)
            self._dirty.set()

    def drop(self, channel: bytes) -> None:
        """Unsubscribe from `channel`."""
        if channel in self.wanted:
            self.wanted.discard(channel)
            self._changed.add(channel)
            self._dirty.set()

    @property
    def url_for_logs(self) -> str:
        url = urlsplit(self.url)
        return f"{url.hostname}:{url.port}"

    # -- called by the protocol -------------------------------------------------------

    def heard(self) -> None:
        self._last_heard = monotonic()  # on every read: the cheapest clock

    def deliver(self, channel: bytes, data: bytes) -> None:
        try:
            self._on_message(channel, data)
        except Exception:
            # One message that cannot be delivered must not take every socket's feed down.
            logger.exception("a pub/sub message could not be delivered")

    def acknowledged(self, kind: bytes, channel: bytes) -> None:
        """A reply to SSUBSCRIBE/SUNSUBSCRIBE, or an `sunsubscribe` the server pushed."""
        head = self._outstanding[0] if self._outstanding else None
        if head is not None and kind[1:].upper() == head.verb[1:] and head.channels[0] == channel:
            head.channels.popleft()
            if not head.channels:
                self._outstanding.popleft().done = True
                self._answered.set()
            return
        if kind == b"sunsubscribe" and channel in self.active:
            # The slot moved away (a migration or a planned failover): Redis dropped it.
            self.active.discard(channel)
            self.wanted.discard(channel)
            self._on_dropped({channel})

    def refused(self, error: str) -> None:
        """An error reply: it answers the oldest command still waiting."""
        if not self._outstanding:
            logger.warning("redis pub/sub error", extra={"error": error})
            return
        head = self._outstanding.popleft()
        head.done = head.refused = True
        self._answered.set()
        refused = set(head.group)
        if head.verb == b"SSUBSCRIBE":
            self.wanted.difference_update(refused)
            self._on_refused(refused, error)

    # -- connection lifecycle ---------------------------------------------------------

    @property
    def idle(self) -> bool:
        return not self.wanted and not self.active

    async def _run(self) -> None:
        delay = 0.05
        while True:
            self.active.clear()
            self._outstanding.clear()
            try:
                connection = await self._connect()
            except (OSError, ConnectionError, TimeoutError) as error:
                logger.warning(
                    "redis pub/sub connect failed",
                    extra={"node": self.url_for_logs, "error": str(error)},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.05
            self._redis = connection
            self._changed = set(self.wanted)  # a new connection holds nothing yet
            self.heard()
            control = asyncio.create_task(self._control(), name="pubsub-control")
            try:
                done, _ = await asyncio.wait(
                    {connection.closed, control}, return_when="FIRST_COMPLETED"
                )
                for finished in done:
                    finished.result()
            except (OSError, ConnectionError, TimeoutError, hiredis.ProtocolError) as error:
                logger.warning(
                    "redis pub/sub connection lost",
                    extra={"node": self.url_for_logs, "error": str(error)},
                )
            finally:
                control.cancel()
                await asyncio.gather(control, return_exceptions=True)
                connection.close()
                self._redis = None
                self.active.clear()
            if self.connected.is_set():
                self.connected.clear()
                self.reconnects += 1
                self._on_lost(set(self.wanted))

    async def _connect(self) -> PubSubConnection:
        url = urlsplit(self.url)
        context = ssl.create_default_context() if url.scheme == "rediss" else None
        loop = asyncio.get_running_loop()
        _, connection = await asyncio.wait_for(
            loop.create_connection(
                lambda: PubSubConnection(self), url.hostname or "localhost", url.port or 6379,
                ssl=context,
            ),
            timeout=5,
        )  # fmt: skip
        if url.password:
            parts = (
                [unquote(url.username), unquote(url.password)]
                if url.username
                else [unquote(url.password)]
            )
            connection.write(resp_command("AUTH", *parts))
        else:
            connection.write(resp_command("PING"))  # a node that accepts but never answers
        try:
            await asyncio.wait_for(connection.first_reply, timeout=5)
        except (ConnectionError, TimeoutError) as error:
            connection.close()
            problem = "redis AUTH failed" if url.password else "redis did not answer"
            raise ConnectionError(f"{problem}: {error}") from error
        return connection

    async def _control(self) -> None:
        """Make Redis's subscriptions match `wanted`, one batch of commands at a time."""
        self._dirty.set()
        while True:
            try:
                async with asyncio.timeout(self._ping_interval):  # no task per wait, as wait_for
                    await self._dirty.wait()
            except TimeoutError:
                # A quiet connection may be a dead one (a host gone without a RST): PING it,
                # and give up on it when even the PONG does not come back.
                if monotonic() - self._last_heard > 2 * self._ping_interval:
                    raise ConnectionError("redis did not answer PING") from None
                if self._redis is not None:
                    self._redis.write(resp_command("PING"))
                continue
            self._dirty.clear()
            changed, self._changed = self._changed, set()
            wanted, active = self.wanted, self.active
            unsubscribe = {c for c in changed if c in active and c not in wanted}
            subscribe = {c for c in changed if c in wanted and c not in active}
            # Forget a channel before unsubscribing, so a connection that arrives meanwhile
            # waits for the next SSUBSCRIBE instead of trusting a subscription on its way out.
            active.difference_update(unsubscribe)
            await self._send(b"SUNSUBSCRIBE", unsubscribe)
            confirmed = await self._send(b"SSUBSCRIBE", subscribe)
            # What Redis holds now. A channel dropped while its SSUBSCRIBE was on its way is
            # among them, and in `_changed` (drop() put it there): the next pass unsubscribes
            # it, where comparing `active` with `wanted` left it subscribed.
            active.update(confirmed)
            self.connected.set()
            if confirmed := confirmed & self.wanted:
                self._on_confirmed(confirmed)

    async def _send(self, verb: bytes, channels: set[bytes]) -> set[bytes]:
        """Send `verb` for `channels`, one command per hash slot (a sharded command's
        channels must share one), all at once; returns the channels Redis confirmed."""
        if not channels or self._redis is None:
            return set()
        by_slot: dict[int, list[bytes]] = {}
        for channel in channels:
            by_slot.setdefault(key_slot(channel), []).append(channel)
        batch = [_Pending(verb, deque(group), group) for group in by_slot.values()]
        self._outstanding.extend(batch)
        self._redis.write(b"".join(resp_command(verb, *p.group) for p in batch))
        await self._redis.drain()
        async with asyncio.timeout(CONFIRM_TIMEOUT_SECONDS):
            while not batch[-1].done:  # replies come in order: the last one answers all
                self._answered.clear()
                await self._answered.wait()
        return {c for p in batch if not p.refused for c in p.group}
