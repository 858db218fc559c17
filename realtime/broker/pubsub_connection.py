"""One sharded pub/sub connection's bytes: what Redis sends, parsed with hiredis as it
arrives and handed to its node (`pubsub_node.NodeSubscriptions`) from the transport's
callback, with no reader task to wake per message; and what the node sends, written with
flow control.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

import hiredis


class Replies(Protocol):
    """What a connection tells its node of Redis's replies."""

    def heard(self) -> None:
        """Redis said something (the connection is alive)."""

    def deliver(self, channel: bytes, data: bytes) -> None:
        """A message on a subscribed channel."""

    def acknowledged(self, kind: bytes, channel: bytes) -> None:
        """Redis confirmed `ssubscribe` or `sunsubscribe` of `channel` (or dropped it)."""

    def refused(self, error: str) -> None:
        """Redis answered a command with an error."""


def resp_command(*parts: str | bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class PubSubConnection(asyncio.Protocol):
    """One connection's bytes: replies parsed as they arrive; `closed` fails when it ends."""

    def __init__(self, node: Replies) -> None:
        loop = asyncio.get_running_loop()
        self._parser = hiredis.Reader()
        self._node = node
        self._transport: asyncio.Transport | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.first_reply: asyncio.Future[object] = loop.create_future()  # AUTH's answer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        node = self._node
        node.heard()
        parser = self._parser
        try:
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                if isinstance(reply, list):
                    kind = reply[0]
                    if kind == b"smessage":
                        node.deliver(reply[1], reply[2])
                    elif kind in (b"ssubscribe", b"sunsubscribe"):
                        node.acknowledged(kind, reply[1])
                elif isinstance(reply, hiredis.ReplyError):
                    if not self.first_reply.done():
                        raise ConnectionError(f"redis refused the connection: {reply}")
                    node.refused(str(reply))
                elif not self.first_reply.done():
                    self.first_reply.set_result(reply)  # +OK to AUTH, or the first PONG
        except (ConnectionError, hiredis.ProtocolError) as error:
            self.close(error)

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
