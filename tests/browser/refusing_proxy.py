"""A local HTTP proxy that refuses every WebSocket upgrade, as some corporate proxies do, and
passes everything else through to one upstream: the network insight.js must fall back on.
Its refusal is a switch (`refusing`), read as each connection opens: an app built against the
proxy works as usual with it off, and meets that network from the next connection on."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from cli.local_redis import free_port

REFUSAL = b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
MAX_HEAD = 64 * 1024


class RefusingProxy:
    """Listens on 127.0.0.1:`port` in a thread of its own; `refused` counts the upgrades it
    refused, `passed` those it let through."""

    def __init__(self, upstream_port: int, *, refusing: bool = True) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.refusing = refusing
        self.refused = 0
        self.passed = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_origin(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            writer.close()
            return
        if b"\r\nupgrade: websocket" in head.lower():
            if self.refusing:
                self.refused += 1
                writer.write(REFUSAL)
                with contextlib.suppress(OSError):
                    await writer.drain()
                writer.close()
                return
            self.passed += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        up_writer.write(head)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    def __enter__(self) -> RefusingProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy until either side ends (each chunk as it arrives: a stream is never buffered)."""
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except OSError:
        pass
    finally:
        sink.close()


@contextlib.contextmanager
def refusing_proxy(upstream_port: int, *, refusing: bool = True) -> Iterator[RefusingProxy]:
    with RefusingProxy(upstream_port, refusing=refusing) as proxy:
        yield proxy
