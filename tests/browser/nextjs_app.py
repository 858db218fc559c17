"""examples/nextjs as its users run it: `npm ci`, `next build`, `next start`, in a temporary
copy (never inside the checkout), against the real stack of tests/stack.py, its edge behind a
RefusingProxy that lets WebSocket upgrades through until a test switches refusal on.

`running_nextjs` is the whole of it, once per session (tests/browser/conftest.py: `nextjs`),
for every module that drives the app: the install and the build are most of its cost."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from cli.local_redis import free_port
from tests.browser.refusing_proxy import RefusingProxy, refusing_proxy
from tests.harness import ROOT, TEST_AUDIENCE, TEST_ISSUER, TEST_JWT_SECRET
from tests.stack import SERVER_KEY, Stack, fresh_database, start_stack

APP = ROOT / "examples" / "nextjs"
# What a checkout may hold that is not the app's source (a developer's own install or build).
NOT_SOURCE = ("node_modules", ".next", "next-env.d.ts", "*.tsbuildinfo", ".env.local")
NPM_CI_TIMEOUT = 240.0  # a cold npm cache downloads about 100 MB
BUILD_TIMEOUT = 240.0
START_TIMEOUT = 30.0
# The app's stack lives as long as the session: its Celery messages go to a Redis database of
# their own, where no other module's worker takes them, nor its worker another module's.
BROKER_DB = 7
CELERY_KEYS = ("orders", "payments", "metrics", "unacked", "unacked_index", "unacked_mutex")


def npm_or_skip() -> str:
    npm = shutil.which("npm")
    if npm is None:
        if os.environ.get("INSIGHT_REQUIRE_NODE"):
            pytest.fail("npm is missing and INSIGHT_REQUIRE_NODE is set")
        pytest.skip("the Next.js example needs Node.js and npm")
    return npm


def node_env(**extra: str) -> dict[str, str]:
    """The environment of every npm and next command: no telemetry, no update checks."""
    return {
        **os.environ,
        "NEXT_TELEMETRY_DISABLED": "1",
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
        **extra,
    }


def copy_app(destination: Path) -> Path:
    shutil.copytree(APP, destination, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    return destination


def start_npm_ci(npm: str, workdir: Path, log: Path) -> subprocess.Popen[bytes]:
    """`npm ci` from package-lock.json, in the background; npm's own cache (~/.npm) makes
    every run after the first an offline one."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [npm, "ci", "--prefer-offline", "--no-audit", "--no-fund"],
            cwd=workdir,
            env=node_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_npm_ci(process: subprocess.Popen[bytes], log: Path, started: float) -> float:
    """Wait for `npm ci` (bounded); the seconds it took from `started`."""
    try:
        code = process.wait(NPM_CI_TIMEOUT)
    except subprocess.TimeoutExpired as error:
        process.kill()
        process.wait(10)
        raise AssertionError(f"npm ci took over {NPM_CI_TIMEOUT}s:\n{log.read_text()}") from error
    assert code == 0, f"npm ci failed:\n{log.read_text(errors='replace')[-3000:]}"
    return time.monotonic() - started


def next_bin(workdir: Path) -> str:
    return str(workdir / "node_modules" / ".bin" / "next")


def build(workdir: Path, ws_url: str, api_url: str, log: Path) -> float:
    """`next build` with the edge's and the API's URLs inlined (NEXT_PUBLIC_*); the seconds
    it took."""
    env = node_env(NEXT_PUBLIC_INSIGHT_WS=ws_url, NEXT_PUBLIC_INSIGHT_API=api_url)
    started = time.monotonic()
    built = subprocess.run(
        [next_bin(workdir), "build"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False,
    )  # fmt: skip
    log.write_text(built.stdout + built.stderr)
    assert built.returncode == 0, (built.stdout + built.stderr)[-4000:]
    return time.monotonic() - started


@dataclass
class NextApp:
    """`next start` on a production build; the token route signs with the stack's secret."""

    workdir: Path
    port: int
    log_path: Path
    stack: Stack
    proxy: RefusingProxy
    timings: dict[str, float] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """The edge's WebSocket URL as the build has it: through the proxy."""
        return self.proxy.ws_origin + urlsplit(self.stack.edge.ws_url).path

    def start(self) -> NextApp:
        env = node_env(
            JWT_SECRET=TEST_JWT_SECRET,
            JWT_AUDIENCE=TEST_AUDIENCE,
            JWT_ISSUER=TEST_ISSUER,
            INSIGHT_TOKEN_TTL_SECONDS="900",
            INSIGHT_PUBLISH_KEY=SERVER_KEY,
        )
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [next_bin(self.workdir), "start", "-H", "127.0.0.1", "-p", str(self.port)],
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, ended as one in stop()
            )
        deadline = started + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"next start exited:\n{self.log_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"next start not ready in {START_TIMEOUT}s:\n{self.log_text()}")
            time.sleep(0.1)
        self.timings["start"] = time.monotonic() - started
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def own_broker(redis_url: str) -> str:
    """The session Redis's URL, on BROKER_DB."""
    base, _, _ = redis_url.rpartition("/")
    return f"{base}/{BROKER_DB}"


@contextlib.contextmanager
def app_stack(redis_url: str, database_url: str, artifacts: Path, origin: str) -> Iterator[Stack]:
    """The services the app calls, answering its origin only, with its own broker."""
    broker = own_broker(redis_url)
    with pytest.MonkeyPatch.context() as env:
        # The API and the edge answer the app's origin, and only it.
        env.setenv("ALLOWED_ORIGINS", origin)
        # The app's own event (ui_confetti), which its server publishes with a server key.
        env.setenv("INSIGHT_EVENT_MODULES", "demo.events")
        env.setenv("PUBLISH_API_KEYS", SERVER_KEY)
        stack = start_stack(redis_url, database_url, artifacts, broker_url=broker)
    try:
        yield stack
    finally:
        for process in (stack.edge, stack.worker, stack.api, stack.stripe):
            process.stop()
        client = redis.Redis.from_url(broker)
        client.delete(*CELERY_KEYS)
        client.close()


@contextlib.contextmanager
def running_nextjs(
    redis_url: str, artifacts: Path, workroot: Path, keep: Path
) -> Iterator[NextApp]:
    """The app installed, built and started against a stack of its own (SQLite), behind a
    proxy not refusing yet; the build log and the timings are kept in `keep`."""
    npm = npm_or_skip()
    began = time.monotonic()
    workdir = copy_app(workroot / "app")
    npm_log = artifacts / "nextjs-npm-ci.log"
    installing = start_npm_ci(npm, workdir, npm_log)
    port = free_port()
    try:
        with (
            fresh_database("sqlite", artifacts) as database_url,
            app_stack(redis_url, database_url, artifacts, f"http://127.0.0.1:{port}") as stack,
            refusing_proxy(stack.edge.port, refusing=False) as proxy,
        ):
            app = NextApp(workdir, port, artifacts / f"next-{port}.log", stack, proxy)
            try:
                app.timings["npm_ci"] = wait_npm_ci(installing, npm_log, began)
                keep.mkdir(parents=True, exist_ok=True)
                build_log = keep / "nextjs-build.log"
                app.timings["build"] = build(workdir, app.ws_url, stack.api.http_url, build_log)
                app.start()
                app.timings["ready"] = time.monotonic() - began
                (keep / "nextjs-timings.json").write_text(json.dumps(app.timings, indent=2))
                print(f"examples/nextjs: {json.dumps(app.timings)}")  # seen with -s
                yield app
            finally:
                app.stop()
    finally:
        if installing.poll() is None:
            installing.kill()
            installing.wait(10)
