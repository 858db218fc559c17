"""One Redis pub/sub connection per edge process, shared by all of its WebSockets.

Why not redis-py's PubSub: the edge must know exactly when a SUBSCRIBE has taken effect
(to read the log's head only after it, so replay and live traffic meet without a gap), must
survive subscribe/unsubscribe storms from hundreds of concurrent connects, and must learn of
every reconnect (to replay what was published while it was away). So the protocol is driven
here directly over asyncio streams with hiredis parsing: one reader task, and one control
task that sends subscription changes in batches and waits for Redis to confirm each batch
before it sends the next, which keeps reply matching trivially in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
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
        self._writer: asyncio.StreamWriter | None = None
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
            try:
                reader, writer = await self._connect()
            except (OSError, ConnectionError) as error:
                logger.warning("redis pub/sub connect failed", extra={"error": str(error)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.05
            self._writer = writer
            self._last_heard = asyncio.get_running_loop().time()
            self._active.clear()
            self._acks = asyncio.Queue()
            reading = asyncio.create_task(self._read(reader), name="pubsub-reader")
            control = asyncio.create_task(self._control(first), name="pubsub-control")
            first = False
            try:
                done, _ = await asyncio.wait({reading, control}, return_when="FIRST_COMPLETED")
                for task in done:
                    task.result()
            except asyncio.CancelledError:
                writer.close()
                raise
            except (OSError, ConnectionError, hiredis.ProtocolError) as error:
                logger.warning("redis pub/sub connection lost", extra={"error": str(error)})
            finally:
                for task in (reading, control):
                    task.cancel()
                await asyncio.gather(reading, control, return_exceptions=True)
                writer.close()
                self._writer = None
                self._active.clear()
            if self.connected.is_set():
                self.connected.clear()
                self.reconnects += 1
                if self._on_lost is not None:
                    await _maybe_await(self._on_lost())

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        url = urlsplit(self._url)
        context = ssl.create_default_context() if url.scheme == "rediss" else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(url.hostname or "localhost", url.port or 6379, ssl=context),
            timeout=5,
        )
        if url.password:
            parts = (
                [unquote(url.username), unquote(url.password)]
                if url.username
                else [unquote(url.password)]
            )
            writer.write(_command("AUTH", *parts))
            await writer.drain()
            reply = hiredis.Reader()
            while (answer := reply.gets()) is False:
                data = await asyncio.wait_for(reader.read(4096), timeout=5)
                if not data:
                    raise ConnectionError("redis closed the connection during AUTH")
                reply.feed(data)
            if isinstance(answer, hiredis.ReplyError):
                raise ConnectionError(f"redis AUTH failed: {answer}")
        return reader, writer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        parser = hiredis.Reader()
        on_message = self._on_message
        while True:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("redis closed the pub/sub connection")
            self._last_heard = asyncio.get_running_loop().time()
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                if isinstance(reply, hiredis.ReplyError):
                    raise ConnectionError(f"redis refused a pub/sub command: {reply}")
                if not isinstance(reply, list):
                    continue  # +PONG while nothing is subscribed
                kind = reply[0]
                if kind == b"message":
                    on_message(reply[1], reply[2])
                elif kind in (b"subscribe", b"unsubscribe"):
                    self._acks.put_nowait(reply[1])

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
                if self._writer is not None:
                    self._writer.write(_command("PING"))
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
        if not channels or self._writer is None:
            return
        self._writer.write(_command(verb, *channels))
        await self._writer.drain()
        pending = set(channels)
        while pending:
            pending.discard(await asyncio.wait_for(self._acks.get(), timeout=10))


async def _maybe_await(result: Awaitable[None] | None) -> None:
    if result is not None:
        await result
