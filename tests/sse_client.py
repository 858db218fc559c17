"""A Server-Sent Events client for tests, with the WebSocket client's interface
(`tests.harness.Frames`: frames, until, events, silent_for, cursor), so that one guarantee
test drives either transport. Messages are read by a task of their own into a queue, so a
bounded wait that times out never breaks the stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from realtime.frames import SSE_PATH, TICKETS_PATH
from tests.harness import WAIT, Frames


@dataclass(frozen=True)
class Message:
    event: str
    id: str | None
    data: str


class StreamEnded(Exception):
    """The server ended the stream; `closing` is its `insight_close` data, if it sent one."""

    def __init__(self, closing: dict[str, Any] | None) -> None:
        super().__init__(closing)
        self.closing = closing


async def ticket_for(http_url: str, jwt: str) -> str:
    """A ticket bought with `jwt` on the edge at `http_url`."""
    async with httpx.AsyncClient(timeout=WAIT) as http:
        answer = await http.post(
            http_url + TICKETS_PATH, headers={"Authorization": f"Bearer {jwt}"}
        )
    answer.raise_for_status()
    return str(answer.json()["ticket"])


@dataclass
class SseClient(Frames):
    """One SSE stream, its messages parsed as they arrive."""

    http: httpx.AsyncClient
    response: httpx.Response
    frames: list[dict[str, Any]] = field(default_factory=list)
    comments: int = 0
    closing: dict[str, Any] | None = None
    last_id: str | None = None
    _queue: asyncio.Queue[Message | None] = field(default_factory=asyncio.Queue)
    _reader: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        http_url: str,
        *,
        jwt: str | None = None,
        ticket: str | None = None,
        since: str | None = None,
        last_event_id: str | None = None,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        wait_ready: bool = True,
    ) -> SseClient:
        """Open a stream (with a ticket bought with `jwt` unless `ticket` is given); raises
        httpx.HTTPStatusError for a refusal."""
        if ticket is None and jwt is not None:
            ticket = await ticket_for(http_url, jwt)
        params = dict(query or {})
        if ticket is not None:
            params["ticket"] = ticket
        if since is not None:
            params["since"] = since
        sent = dict(headers or {})
        if last_event_id is not None:
            sent["Last-Event-ID"] = last_event_id
        http = httpx.AsyncClient(timeout=httpx.Timeout(WAIT, read=None))
        request = http.build_request("GET", http_url + SSE_PATH, params=params, headers=sent)
        response = await asyncio.wait_for(http.send(request, stream=True), WAIT)
        if response.status_code != 200:
            await response.aread()
            await http.aclose()
            response.raise_for_status()
        client = cls(http, response)
        client._reader = asyncio.create_task(client._read())
        if wait_ready:
            await client.until(lambda f: f["type"] == "insight_ready")
        return client

    async def _read(self) -> None:
        event, event_id = "message", None
        data: list[str] = []
        try:
            async for line in self.response.aiter_lines():
                if line == "":
                    if data:
                        self._queue.put_nowait(Message(event, event_id, "\n".join(data)))
                    event, data, event_id = "message", [], None
                elif line.startswith(":"):
                    self.comments += 1
                else:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "data":
                        data.append(value)
                    elif name == "event":
                        event = value
                    elif name == "id":
                        event_id = value
        except httpx.HTTPError:
            pass
        finally:
            self._queue.put_nowait(None)

    async def message(self, timeout: float = WAIT) -> Message:
        """The next message; StreamEnded once the stream has ended."""
        if self._reader is not None and self._reader.done() and self._queue.empty():
            raise StreamEnded(self.closing)
        message = await asyncio.wait_for(self._queue.get(), timeout)
        if message is None:
            raise StreamEnded(self.closing)
        if message.id is not None:
            self.last_id = message.id
        return message

    async def recv(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next frame (the `data:` of a message without an event name)."""
        while True:
            message = await self.message(timeout)
            if message.event == "insight_close":
                self.closing = json.loads(message.data)
                continue
            frame: dict[str, Any] = json.loads(message.data)
            if "id" in frame:
                assert message.id == frame["id"], f"id: {message.id} against the frame's {frame}"
            self.frames.append(frame)
            return frame

    async def closed_with(self, timeout: float = WAIT) -> tuple[int, str]:
        """Read until the server ends the stream; its `insight_close` code and reason."""
        with contextlib.suppress(StreamEnded):
            async with asyncio.timeout(timeout):
                while True:
                    await self.recv(timeout)
        assert self.closing is not None, "the stream ended without insight_close"
        return int(self.closing["code"]), str(self.closing["reason"])

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self.response.aclose()
        await self.http.aclose()
