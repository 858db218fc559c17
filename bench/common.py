"""What every benchmark shares: the token secret, the servers' environment, starting a uvicorn
app and waiting until it answers, and minting tokens without re-reading settings each time."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import httpx

from core.config import Settings
from core.security import issue_token

SECRET = "bench-secret-that-is-long-enough-for-hs256-000"


def server_env(redis_url: str) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": redis_url, "EVENTS_REDIS_URL": redis_url,
            "JWT_SECRET": SECRET, "ENVIRONMENT": "development", "LOG_LEVEL": "WARNING"}  # fmt: skip


def wait_ready(url: str, timeout: float = 60) -> None:
    """Poll `url` until it answers at all (any status): the server is accepting."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer in {timeout}s")


LOGS = Path(tempfile.gettempdir()) / "insight-bench-logs"


def start_server(
    command: list[str], port: int, redis_url: str, code: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a server (from the product packages in `code`, if given: a baseline commit's);
    its output goes to LOGS/<port>.log."""
    LOGS.mkdir(exist_ok=True)
    env = server_env(redis_url)
    if code is not None:  # `-m` puts the working directory first on the import path
        env["PYTHONPATH"] = str(code)
    with open(LOGS / f"{port}.log", "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=code)
    wait_ready(f"http://127.0.0.1:{port}/")
    return process


def start_uvicorn(app: str, port: int, redis_url: str) -> subprocess.Popen[bytes]:
    """A peer under uvicorn as the benchmarks run servers: no access log, no compression."""
    return start_server(
        [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", "--no-access-log", "--ws-per-message-deflate", "false"],
        port, redis_url,
    )  # fmt: skip


def start_edge(port: int, redis_url: str, code: Path | None = None) -> subprocess.Popen[bytes]:
    """An Insight edge, started as operators start one (`insight edge`); from `code`, the
    product packages of a baseline commit, if given."""
    command = [sys.executable, "-m", "cli.main", "edge", "--port", str(port)]
    return start_server(command, port, redis_url, code)


@lru_cache(maxsize=1)
def bench_settings() -> Settings:
    return Settings(jwt_secret=SECRET)


def token(user: str, business: str | None = None) -> str:
    return issue_token(bench_settings(), user, business_id=business, ttl_seconds=3600)


def percentile(values: list[float], fraction: float) -> float | None:
    """The value `fraction` of the way up the sorted values (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def code_commit() -> str:
    """The commit whose product code is being measured: HEAD, marked `+changes` when files
    outside bench/ and tests/ differ from it (a figure is then of no commit at all)."""

    def git(*args: str) -> str:
        root = Path(__file__).resolve().parent.parent
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True
        ).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--", ".", ":!bench", ":!tests")
    return f"{head}+changes" if changed else head
