"""One Redis pub/sub connection per edge process, shared by all of its WebSockets.

Why not redis-py's PubSub: the edge must know exactly when a SUBSCRIBE has taken effect
(to read the log's head only after it, so replay and live traffic meet without a gap), must
survive subscribe/unsubscribe storms from hundreds of concurrent connects, and must learn of
every reconnect (to replay what was published while it was away). So the protocol is driven
here directly: an asyncio protocol parses what Redis sends with hiredis as it arrives and
hands each message to the hub from the transport's callback (no reader task to wake per
message), and one control task sends subscription changes in batches and waits for Redis to
confirm each batch before it sends the next, which keeps reply matching trivially in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import cast
from urllib.parse import unquote, urlsplit

import hiredis

logger = logging.getLogger(__name__)

OnMessage = Callable[[bytes, bytes], None]
OnConnectionChange = Callable[[], Awaitable[None] | None]


def _command(*parts: str | bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _RedisProtocol(asyncio.Protocol):
    """One connection's bytes: replies parsed as they arrive; `closed` fails when it ends."""

    def __init__(
        self,
        on_message: OnMessage,
        on_ack: Callable[[bytes], None],
        on_heard: Callable[[], None],
    ) -> None:
        loop = asyncio.get_running_loop()
        self._parser = hiredis.Reader()
        self._on_message = on_message
        self._on_ack = on_ack
        self._on_heard = on_heard
        self._transport: asyncio.Transport | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.first_reply: asyncio.Future[object] = loop.create_future()  # AUTH's answer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._on_heard()
        parser = self._parser
        try:
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                if isinstance(reply, hiredis.ReplyError):
                    raise ConnectionError(f"redis refused a pub/sub command: {reply}")
                if not isinstance(reply, list):
                    if not self.first_reply.done():
                        self.first_reply.set_result(reply)
                    continue  # +OK to AUTH, +PONG while nothing is subscribed
                kind = reply[0]
                if kind == b"message":
                    self._deliver(reply[1], reply[2])
                elif kind in (b"subscribe", b"unsubscribe"):
                    self._on_ack(reply[1])
        except (ConnectionError, hiredis.ProtocolError) as error:
            self.close(error)

    def _deliver(self, channel: bytes, data: bytes) -> None:
        try:
            self._on_message(channel, data)
        except Exception:
            # One message that cannot be delivered must not take every socket's feed down.
            logger.exception("a pub/sub message could not be delivered")

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc or ConnectionError("redis closed the pub/sub connection"))
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self.closed.done():
            self._transport.write(data)

    async def drain(self) -> None:
        await self._writable.wait()
        if self.closed.done():
            self.closed.result()  # raises why it ended

    def close(self, error: BaseException | None = None) -> None:
        self._end(error or ConnectionError("pub/sub connection closed"))
        if self._transport is not None:
            self._transport.close()

    def _end(self, error: BaseException) -> None:
        for future in (self.closed, self.first_reply):
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: whoever awaits it still gets the error


class PubSubConnection:
    """Reference-counted channel subscriptions over one self-healing Redis connection."""

    def __init__(
        self,
        url: str,
        on_message: OnMessage,
        *,
        on_lost: OnConnectionChange | None = None,
        on_restored: OnConnectionChange | None = None,
        ping_interval: float = 5.0,
    ) -> None:
        self._url = url
        self._on_message = on_message
        self._on_lost = on_lost
        self._on_restored = on_restored
        self._ping_interval = ping_interval
        self._last_heard = 0.0
        self._refcount: dict[bytes, int] = {}
        self._active: set[bytes] = set()  # confirmed by Redis on the current connection
        self._waiters: dict[bytes, asyncio.Future[None]] = {}
        self._dirty = asyncio.Event()
        self._acks: asyncio.Queue[bytes] = asyncio.Queue()
        self._redis: _RedisProtocol | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.reconnects = 0

    # -- public API -------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pubsub-connection")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError("pub/sub connection closed"))

    def hold(self, channel: bytes) -> asyncio.Future[None] | None:
        """Hold a subscription to `channel`; await the returned future (if any) for Redis to
        confirm it. The hold counts at once, so a caller that gives up must still release."""
        self._refcount[channel] = self._refcount.get(channel, 0) + 1
        if channel in self._active:
            return None
        waiter = self._waiters.get(channel)
        if waiter is None:
            waiter = self._waiters[channel] = asyncio.get_running_loop().create_future()
        self._dirty.set()
        return waiter

    def release(self, channel: bytes) -> None:
        """Drop one hold on `channel`; the last one out unsubscribes."""
        count = self._refcount.get(channel, 0) - 1
        if count > 0:
            self._refcount[channel] = count
            return
        self._refcount.pop(channel, None)
        self._dirty.set()

    @property
    def channel_count(self) -> int:
        return len(self._active)

    # -- connection lifecycle ---------------------------------------------------------

    async def _run(self) -> None:
        delay = 0.05
        first = True
        while True:
            self._active.clear()
            self._acks = asyncio.Queue()
            try:
                connection = await self._connect()
            except (OSError, ConnectionError) as error:
                logger.warning("redis pub/sub connect failed", extra={"error": str(error)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.05
            self._redis = connection
            self._last_heard = asyncio.get_running_loop().time()
            control = asyncio.create_task(self._control(first), name="pubsub-control")
            first = False
            try:
                done, _ = await asyncio.wait(
                    {connection.closed, control}, return_when="FIRST_COMPLETED"
                )
                for finished in done:
                    finished.result()
            except (OSError, ConnectionError, hiredis.ProtocolError) as error:
                logger.warning("redis pub/sub connection lost", extra={"error": str(error)})
            finally:
                control.cancel()
                await asyncio.gather(control, return_exceptions=True)
                connection.close()
                self._redis = None
                self._active.clear()
            if self.connected.is_set():
                self.connected.clear()
                self.reconnects += 1
                if self._on_lost is not None:
                    await _maybe_await(self._on_lost())

    async def _connect(self) -> _RedisProtocol:
        url = urlsplit(self._url)
        context = ssl.create_default_context() if url.scheme == "rediss" else None
        loop = asyncio.get_running_loop()
        _, connection = await asyncio.wait_for(
            loop.create_connection(
                lambda: _RedisProtocol(self._on_message, self._acks.put_nowait, self._heard),
                url.hostname or "localhost",
                url.port or 6379,
                ssl=context,
            ),
            timeout=5,
        )
        if url.password:
            parts = (
                [unquote(url.username), unquote(url.password)]
                if url.username
                else [unquote(url.password)]
            )
            connection.write(_command("AUTH", *parts))
            try:
                await asyncio.wait_for(connection.first_reply, timeout=5)
            except (ConnectionError, TimeoutError) as error:
                connection.close()
                raise ConnectionError(f"redis AUTH failed: {error}") from error
        return connection

    def _heard(self) -> None:
        self._last_heard = asyncio.get_running_loop().time()

    async def _control(self, first: bool) -> None:
        """Make Redis's subscriptions match the reference counts, one confirmed batch at a time."""
        self._dirty.set()
        loop = asyncio.get_running_loop()
        while True:
            try:
                await asyncio.wait_for(self._dirty.wait(), self._ping_interval)
            except TimeoutError:
                # A quiet connection may be a dead one (a host gone without a RST): PING it,
                # and give up on it when even the PONG does not come back.
                if loop.time() - self._last_heard > 2 * self._ping_interval:
                    raise ConnectionError("redis did not answer PING") from None
                if self._redis is not None:
                    self._redis.write(_command("PING"))
                continue
            self._dirty.clear()
            wanted = set(self._refcount)
            for abandoned in [c for c in self._waiters if c not in wanted]:
                self._waiters.pop(abandoned).cancel()
            unsubscribe = list(self._active - wanted)
            subscribe = list(wanted - self._active)
            # Forget a channel before unsubscribing, so a connection that arrives meanwhile
            # waits for the next SUBSCRIBE instead of trusting a subscription on its way out.
            self._active.difference_update(unsubscribe)
            await self._send_and_confirm(b"UNSUBSCRIBE", unsubscribe)
            await self._send_and_confirm(b"SUBSCRIBE", subscribe)
            self._active.update(subscribe)
            for channel in subscribe:
                waiter = self._waiters.pop(channel, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            if not self.connected.is_set():
                self.connected.set()
                if not first and self._on_restored is not None:
                    await _maybe_await(self._on_restored())

    async def _send_and_confirm(self, verb: bytes, channels: list[bytes]) -> None:
        if not channels or self._redis is None:
            return
        self._redis.write(_command(verb, *channels))
        await self._redis.drain()
        pending = set(channels)
        while pending:
            pending.discard(await asyncio.wait_for(self._acks.get(), timeout=10))


async def _maybe_await(result: Awaitable[None] | None) -> None:
    if result is not None:
        await result
