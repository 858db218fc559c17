"""One open session's life after its open, whatever its transport: the writer that drains
its send buffer, the reader that watches the client (a `Client`'s: a WebSocket's polices what
it sends and renews the session in band, `edge.socket_client`; an SSE stream's waits for it to
leave), its token's expiry (`edge.expiry`), and its first catch-up from the logs, until one of
them ends it.

Inbound frames are read by a helper task that runs only while a message waits (on a socket
that says when one arrives, `SocketWire`), and the token's expiry and the keepalive wait on
the process's timer wheel, so an idle open socket costs its own ASGI task and no other: at
tens of thousands of connections per process, every task is memory (a task and the chain of
coroutines waiting in it were a tenth of an idle connection's: bench/results/design-figures.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Protocol

import redis
from starlette.websockets import WebSocketDisconnect

from core.config import Settings
from core.security import accepted_until
from edge.close_codes import CloseCode
from edge.connection import ClientConnection
from edge.expiry import Expiry
from edge.frame_writer import FrameWriter, SocketWire
from edge.hub import Hub

logger = logging.getLogger(__name__)

WIRE_BATCH_FRAMES = 256  # frames joined into one socket write when a backlog drains
WIRE_BATCH_BYTES = 256 * 1024  # and their bytes: a backlog moves to the transport in steps


def log_broker_failure(message: str, error: BaseException) -> None:
    """A Redis error or a timeout is the expected failure; anything else is redis-py breaking
    under load (seen on a cluster client amid a connect storm), logged with its traceback."""
    unexpected = not isinstance(error, redis.RedisError | TimeoutError)
    logger.warning(message, extra={"error": repr(error)}, exc_info=unexpected)


class Client(Protocol):
    """A session's client as its transport sees it. An object rather than callbacks: a
    partial or a bound method held for the session's life is one more object per socket."""

    async def read(self, expiry: Expiry) -> None:
        """Watch the client (in a helper task). Returns once no message waits, on a socket
        that says when one arrives (`SocketWire`); else when the session ends. Raises when
        the peer went away."""

    async def send(self, frame: bytes) -> None:
        """One frame through ASGI: only for a connection without a wire."""


async def pump(
    connection: ClientConnection,
    settings: Settings,
    hub: Hub,
    client: Client,
    arrivals: SocketWire | None = None,
) -> CloseCode:
    """Send what the fan-out could not write at once, until the connection must close, and
    return why; raises what `client.read` raised when the peer went away.

    Frames go to the connection's wire when its server offers one (`edge.frame_writer`),
    else one at a time through `client.send`. With `arrivals`, `client.read` runs only while
    a message waits; without, it watches the client until the end.
    """
    expiry = Expiry(connection, accepted_until(connection.identity, settings))
    helpers = HelperTasks(client, expiry)
    if arrivals is None:
        helpers.start(client.read(expiry))
    else:
        arrivals.notify_arrivals(helpers.message_arrived)
    # The replay of what the client missed runs beside the writer, which drains it to the
    # socket as it is queued: a page is read only once the socket took the previous ones.
    helpers.start(_catch_up(hub, connection))
    try:
        if (wire := connection.wire) is None:
            await _drain_through_asgi(connection, client)
        # The writer to a wire, here rather than in a coroutine of its own (which would be
        # one more frame held while the socket idles). It writes the backlog in batches, each
        # once the transport takes data: nothing is taken from the buffer while the write
        # would wait, so the fan-out never overtakes it. A close does not wait for the
        # transport: a peer that stopped reading never lets it drain.
        while wire is not None:
            while connection.idle():
                await connection.changed()
            if connection.ending():
                break
            if not wire.takes_data():
                await _writable_or_closing(wire, connection)
            if connection.ending():
                break
            if not _write_batch(connection, wire):
                raise WebSocketDisconnect(1006)  # closed under us: the peer or the server left
    finally:
        if arrivals is not None:
            arrivals.notify_arrivals(None)
        expiry.cancel()
        await helpers.stop()
    if helpers.error is not None:
        raise helpers.error  # the peer went away (WebSocketDisconnect, ClientDisconnect)
    assert connection.close_code is not None
    return connection.close_code


class HelperTasks:
    """A session's helper tasks: its first catch-up and its reader, each let go once it
    ends, so that an idle socket that said when a message arrives (`SocketWire`) holds no
    task but its own: a reader starts when a message arrives and none is reading, and ends
    once none waits. The first error a helper raised is kept for `pump` to raise."""

    __slots__ = ("_client", "_expiry", "_reading", "_tasks", "error")

    def __init__(self, client: Client, expiry: Expiry) -> None:
        self._client = client
        self._expiry = expiry
        self._reading = False
        self._tasks: list[asyncio.Task[None]] = []  # at most two; an empty set is 216 bytes
        self.error: BaseException | None = None

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.append(task)
        task.add_done_callback(self._ended)

    def message_arrived(self) -> None:
        if not self._reading and self.error is None:
            self._reading = True
            self.start(self._read_while_any())

    async def _read_while_any(self) -> None:
        try:
            await self._client.read(self._expiry)
        except Exception as error:
            # Known now, not at the task's done callback: a message queued in between (the
            # second disconnect uvicorn queues for a close frame) starts no reader after this.
            self.error = self.error or error
            raise
        finally:
            # Cleared as the reader returns, with no await between its last look at the
            # socket and this: a message that arrives after it starts another reader.
            self._reading = False

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.remove(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self.error = self.error or error

    def running(self) -> int:
        return len(self._tasks)

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _catch_up(hub: Hub, connection: ClientConnection) -> None:
    """The connection's first catch-up; if the logs cannot be read, it closes 1013."""
    try:
        await hub.catch_up(connection, announce=True)
    except Exception as error:  # a client that breaks in another way is no less down
        log_broker_failure("catching up from the logs failed", error)
        connection.close(CloseCode.TRY_AGAIN_LATER)


def _write_batch(connection: ClientConnection, wire: FrameWriter) -> bool:
    """The next batch from the buffer's head, in one write. A function of its own, so that
    its frames (up to WIRE_BATCH_BYTES) are not held by the writer while it waits."""
    encode = connection.encode
    frames = connection.take(WIRE_BATCH_FRAMES, WIRE_BATCH_BYTES)
    return wire.write_frame(b"".join(encode(frame) for frame in frames))


async def _writable_or_closing(wire: FrameWriter, connection: ClientConnection) -> None:
    """Until the transport takes data again or the connection must close, whichever first."""
    waits = [
        asyncio.ensure_future(wire.wait_writable()),
        asyncio.ensure_future(connection.wait_closing()),
    ]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def _drain_through_asgi(connection: ClientConnection, client: Client) -> None:
    while True:
        while connection.idle():
            await connection.changed()
        if connection.ending():
            return
        await client.send(connection.take(1, WIRE_BATCH_BYTES)[0])  # no local holds it
