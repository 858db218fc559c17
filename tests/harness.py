"""Real processes for tests: uvicorn edges on free ports, and a WebSocket client with bounded
waits. Nothing here is a fake; fixtures in conftest.py wire these together."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from cli.local_redis import free_port
from core.config import Settings
from core.security import issue_token
from edge.serving import APP
from realtime.frames import event_id_of

ROOT = Path(__file__).resolve().parent.parent
TEST_JWT_SECRET = "test-secret-that-is-long-enough-for-hs256-0123"
TEST_AUDIENCE = "insight-tests"
TEST_ISSUER = "insight-test-issuer"
TEST_WEBHOOK_SECRET = "whsec_test_0123456789abcdef"
WAIT = 10.0  # the longest any single expectation may take


def settings_for(redis_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "redis_url": redis_url,
        "jwt_secret": TEST_JWT_SECRET,
        "jwt_audience": TEST_AUDIENCE,
        "jwt_issuer": TEST_ISSUER,
        "stripe_webhook_secret": TEST_WEBHOOK_SECRET,
        **overrides,
    }
    return Settings(**values)


def token_for(settings: Settings, user: str, business: str | None = None, ttl: int = 3600) -> str:
    return issue_token(settings, user, business_id=business, ttl_seconds=ttl)


@dataclass
class ServerProcess:
    """`uvicorn <app>` on a free port, logging to a file, ready when its probe answers 200."""

    app: str
    port: int
    env: dict[str, str]
    log_path: Path
    ready_path: str = "/readyz"
    process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.wait_ready()
        return self

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "uvicorn", self.app,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--timeout-graceful-shutdown", "5",
        ]  # fmt: skip

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.app} exited early:\n{self.log_text()[-3000:]}")
            try:
                if httpx.get(self.http_url + self.ready_path, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.app} not ready in {timeout}s:\n{self.log_text()[-3000:]}")

    def terminate(self) -> int:
        """SIGTERM, as an orchestrator would; returns the exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=15)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Edge(ServerProcess):
    """The realtime edge, started as operators start it (`insight edge`)."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "cli.main", "edge", "--port", str(self.port)]

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/insight"

    def connection_count(self) -> int:
        body = httpx.get(f"{self.http_url}/readyz", timeout=5).json()
        return int(body["connections"])


class PlainUvicornEdge(Edge):
    """The same edge app under stock `uvicorn edge.app:app`: uvicorn's own protocols,
    so the scope holds no `FrameWriter` and every frame goes through ASGI sends."""

    def command(self) -> list[str]:
        return ServerProcess.command(self)


def base_env(redis_url: str, **overrides: str) -> dict[str, str]:
    """The environment of every process under test: test secrets and the private Redis."""
    return {
        **os.environ,
        "ENVIRONMENT": "test",
        "REDIS_URL": redis_url,
        "JWT_SECRET": TEST_JWT_SECRET,
        "JWT_AUDIENCE": TEST_AUDIENCE,
        "JWT_ISSUER": TEST_ISSUER,
        "STRIPE_WEBHOOK_SECRET": TEST_WEBHOOK_SECRET,
        "LOG_LEVEL": "INFO",
        **overrides,
    }


def start_edge(
    redis_url: str, log_dir: Path, served_by: type[Edge] = Edge, /, **env_overrides: str
) -> Edge:
    """An edge on a free port, served by `insight edge` unless `served_by` says otherwise."""
    port = free_port()
    env = base_env(redis_url, **env_overrides)
    return served_by(APP, port, env, log_dir / f"edge-{port}.log").start()


def last_id(frames: Sequence[Mapping[str, Any]]) -> str:
    """The last id among `frames`: the cursor a client resumes from with `since`."""
    return str(next(f["id"] for f in reversed(frames) if "id" in f))


class Frames(ABC):
    """What a test reads from any stream of frames (a WebSocket, an SSE stream), given `recv`,
    which receives and records the next frame in `frames`."""

    frames: list[dict[str, Any]]

    @abstractmethod
    async def recv(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next frame, recorded in `frames`."""

    async def until(self, done: Any, timeout: float = WAIT) -> dict[str, Any]:
        """Receive until a frame satisfies `done`; returns it."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv(timeout)
                if done(frame):
                    return frame

    async def events(self, count: int, timeout: float = WAIT) -> list[dict[str, Any]]:
        """The next `count` UI events (control frames are recorded but skipped)."""
        received: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while len(received) < count:
                frame = await self.recv(timeout)
                if frame["type"].startswith("ui_"):
                    received.append(frame)
        return received

    async def silent_for(self, seconds: float) -> bool:
        """True if no UI event arrives within `seconds` (for asserting non-delivery)."""
        try:
            async with asyncio.timeout(seconds):
                while True:
                    frame = await self.recv(seconds)
                    if frame["type"].startswith("ui_"):
                        return False
        except TimeoutError:
            return True

    @property
    def cursor(self) -> str:
        """The last id seen (events and the ready frame both carry one)."""
        return last_id(self.frames)


@dataclass
class Client(Frames):
    """A WebSocket client that records every frame it receives."""

    ws: ClientConnection
    frames: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    async def connect(
        cls,
        url: str,
        token: str | None = None,
        *,
        since: str | None = None,
        query: Mapping[str, str] | None = None,
        wait_ready: bool = True,
        **options: Any,
    ) -> Client:
        params = dict(query or {})
        if token is not None:
            params["token"] = token
        if since is not None:
            params["since"] = since
        target = url + ("?" + str(httpx.QueryParams(params)) if params else "")
        ws = await asyncio.wait_for(websockets.connect(target, **options), WAIT)
        client = cls(ws)
        if wait_ready:
            await client.until(lambda f: f["type"] == "insight_ready")
        return client

    async def recv(self, timeout: float = WAIT) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.frames.append(frame)
        return frame

    async def closed_with(self, timeout: float = WAIT) -> int:
        """Receive (and record) frames until the server closes; returns the close code."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self.recv(timeout)
        except ConnectionClosed:
            pass
        received = self.ws.protocol.close_rcvd
        assert received is not None, "closed without a close frame from the server"
        return int(received.code)

    async def close(self) -> None:
        await self.ws.close()


async def closed(client: Client, timeout: float = WAIT) -> tuple[int, str]:
    """The close code and reason the server sent."""
    code = await client.closed_with(timeout)
    received = client.ws.protocol.close_rcvd
    assert received is not None
    return code, received.reason


async def eventually(
    condition: Callable[[], bool], timeout: float = WAIT, what: str = "condition not met"
) -> None:
    """Poll `condition` until it holds, for state only visible by asking (an HTTP probe)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout}s")
        await asyncio.sleep(0.05)


def unique(prefix: str) -> str:
    """A fresh user or business id, so tests sharing an edge never see each other's events."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def id_of(frame: dict[str, Any]) -> str:
    """The id of the event a frame carries, as its publisher was given it: the first part of
    the frame's `id`, which is the connection's whole cursor (see `realtime.frames`)."""
    return event_id_of(str(frame["id"]))


def as_published(frame: dict[str, Any]) -> dict[str, Any]:
    """The frame with its event's id in place of the connection's cursor."""
    return {**frame, "id": id_of(frame)}


def without_id(frame: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in frame.items() if k != "id"}
