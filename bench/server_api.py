"""What a call of the server API costs, against UIManager's direct publish, in the same run.

A private Redis, one edge with N users' sockets open (so presence exists: the edge writes
it), and the job API as operators run it (`uvicorn api.main:app`, a migrated SQLite
database, PUBLISH_API_KEYS). Then R calls of each, one after the other, each call timed:

- `publish, UIManager`: `UIManager(...).show_toast(...)` in this process, straight to Redis;
- `publish, HTTP`: `POST /api/v1/publish` with the server key, one keep-alive connection;
- `presence, UIManager`: `UIManager(...).connections()` in this process;
- `presence, HTTP`: `GET /api/v1/presence/users/{id}`;
- `floor, HTTP`: the same POST to `bench.floor_api` on uvicorn, a bare ASGI app answering at
  once; `floor, HTTP + Redis`, `+ EVALSHA` and `+ bare Redis`: the same after one Redis round
  trip, through the job API's kind of redis-py client (a PING with all its layers), through
  the job API's own call path (an EVALSHA of a one-line script), or on a bare asyncio
  connection of the floor's own (`bench.floor_api`): what the publish route's figure cannot go
  below on this stack, and what a Redis connection of Insight's own would take off it.

`cpu_us_per_call` is the CPU of the process that does the work: this process for UIManager
(time.process_time over the loop), the API process for HTTP (psutil, over the loop);
`client_cpu_us_per_call` is what the HTTP client in this process spent besides.

    .venv/bin/python -m bench.server_api --calls 500
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import websockets

from bench.baseline import checkout
from bench.common import LOGS, SECRET, server_env, start_edge, token, wait_ready
from bench.targets import Target
from cli.local_redis import LocalRedis, free_port
from core.config import Settings
from realtime.broker.topology import sync_client
from realtime.eventlog import EventLog
from realtime.publisher import UIManager
from realtime.recipients import Recipient

Row = dict[str, Any]
USERS = 100
INSIGHT = Target("insight")  # the tree's
KEY = "bench-publish-key-0123456789-abcdefghijklmnop"
BASELINE = "publish, UIManager"
HTTP_PUBLISH = "publish, HTTP"
FLOOR_EVALSHA = "floor, HTTP + EVALSHA"
# Each floor and its round trip to Redis (`bench.floor_api`'s FLOOR_REDIS_CALL; None: none).
FLOORS = {
    "floor, HTTP": None,
    "floor, HTTP + Redis": "client",
    FLOOR_EVALSHA: "evalsha",
    "floor, HTTP + bare Redis": "bare",
}


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _api_env(redis_url: str, database_url: str) -> dict[str, str]:
    return {
        **server_env(redis_url),
        "ENVIRONMENT": "test",
        "DATABASE_URL": database_url,
        "PUBLISH_API_KEYS": KEY,
        "STRIPE_WEBHOOK_SECRET": "whsec_bench_" + "0" * 32,
    }


def _start_api(port: int, env: dict[str, str], code: Path | None) -> subprocess.Popen[bytes]:
    """`insight migrate`, then the job API under uvicorn (from `code`, a baseline commit's
    product packages, if given); output in LOGS/<port>.log."""
    if code is not None:  # `-m` puts the working directory first on the import path
        env = {**env, "PYTHONPATH": str(code)}
    subprocess.run(
        [sys.executable, "-m", "cli.main", "migrate"], env=env, check=True, timeout=60, cwd=code
    )
    return _uvicorn("api.main:app", port, env, code)


def _uvicorn(
    app: str, port: int, env: dict[str, str], code: Path | None
) -> subprocess.Popen[bytes]:
    """`app` under uvicorn as the bench runs the job API; output in LOGS/<port>.log."""
    LOGS.mkdir(exist_ok=True)
    with open(LOGS / f"{port}.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning", "--no-access-log"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=code,
        )  # fmt: skip
    wait_ready(f"http://127.0.0.1:{port}/")
    return process


@contextmanager
def _sockets(edge_url: str, users: list[str]) -> Iterator[None]:
    """Every user's socket open (and drained) on a loop of its own thread."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def hold(user: str) -> None:
        async with websockets.connect(f"{edge_url}?token={token(user)}", compression=None) as ws:
            await ws.recv()  # insight_ready

            async def drain() -> None:
                async for _ in ws:
                    pass

            drainer = asyncio.create_task(drain())
            await stop.wait()
            drainer.cancel()

    async def run() -> None:
        await asyncio.gather(*(hold(user) for user in users))

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


def _wait_presence(ui: Callable[[str], UIManager], users: list[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while any(ui(user).connections() < 1 for user in users):
        if time.monotonic() > deadline:
            raise RuntimeError(f"presence of {len(users)} users not written in {timeout}s")
        time.sleep(0.05)


def _timed(call: Callable[[int], object], calls: int, server: psutil.Process | None) -> Row:
    """`call(n)` for n in range(calls), after a few unmeasured: latency and CPU per call."""
    for n in range(min(20, calls)):
        call(n)
    times: list[float] = []
    before = server.cpu_times() if server is not None else None
    cpu = time.process_time()
    for n in range(calls):
        started = time.perf_counter()
        call(n)
        times.append((time.perf_counter() - started) * 1000)
    client_us = (time.process_time() - cpu) / calls * 1e6
    row: Row = {
        "calls": calls,
        "p50_ms": round(statistics.median(times), 3),
        "p99_ms": round(_percentile(times, 0.99), 3),
    }
    if server is None or before is None:
        row["cpu_us_per_call"] = round(client_us, 1)
    else:
        after = server.cpu_times()
        used = (after.user - before.user) + (after.system - before.system)
        row["cpu_us_per_call"] = round(used / calls * 1e6, 1)
        row["client_cpu_us_per_call"] = round(client_us, 1)
    return row


def measure(calls: int, users: int = USERS, target: Target = INSIGHT) -> list[Row]:
    """One run: a private Redis, edge and job API; `calls` of each kind. One row per kind.
    For a baseline commit's target, its job API runs that commit's code; the edge and
    UIManager (in this process) stay the tree's, so its HTTP rows read against the same
    direct publish."""
    names = [f"api-{n}" for n in range(users)]
    with tempfile.TemporaryDirectory() as scratch:
        server = LocalRedis(free_port(), Path(scratch) / "redis").start()
        edge_port, api_port = free_port(), free_port()
        started: list[subprocess.Popen[bytes]] = []
        try:
            started.append(start_edge(edge_port, server.url))
            env = _api_env(server.url, f"sqlite:///{Path(scratch) / 'insight.db'}")
            started.append(api := _start_api(api_port, env, target.code))
            floors: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}  # name: (URL, server)
            if target.code is None:  # the floor is the stack's, whichever commit the API runs
                for name, round_trip in FLOORS.items():
                    floor_env = server_env(server.url)
                    if round_trip is not None:
                        floor_env.update(FLOOR_REDIS_URL=server.url, FLOOR_REDIS_CALL=round_trip)
                    port = free_port()
                    started.append(floor := _uvicorn("bench.floor_api:app", port, floor_env, None))
                    floors[name] = (f"http://127.0.0.1:{port}", floor)
            # UIManager's own log, made as default_event_log makes it (one connection).
            client = sync_client(server.url, single_connection_client=True, socket_timeout=5)
            log = EventLog(client, Settings(jwt_secret=SECRET).retention)

            def ui(user: str) -> UIManager:
                return UIManager(Recipient.user(user), log)

            with (
                contextlib.ExitStack() as clients,
                _sockets(f"ws://127.0.0.1:{edge_port}/api/v1/insight", names),
                httpx.Client(
                    base_url=f"http://127.0.0.1:{api_port}/api/v1",
                    headers={"Authorization": f"Bearer {KEY}"},
                    timeout=10,
                ) as http,
            ):
                _wait_presence(ui, names)
                api_process = psutil.Process(api.pid)

                def post(n: int, client: httpx.Client = http, path: str = "/publish") -> None:
                    body = {"to": {"user": names[n % users]},
                            "event": {"type": "ui_toast", "title": "Bench", "description": str(n),
                                      "variant": "info"}}  # fmt: skip
                    client.post(path, json=body).raise_for_status()

                def presence(n: int) -> None:
                    answer = http.get(f"/presence/users/{names[n % users]}")
                    assert answer.raise_for_status().json()["connections"] >= 1

                kinds: list[tuple[str, Callable[[int], object], psutil.Process | None]] = [
                    (BASELINE,
                     lambda n: ui(names[n % users]).show_toast("Bench", str(n), "info"), None),
                    (HTTP_PUBLISH, post, api_process),
                    ("presence, UIManager", lambda n: ui(names[n % users]).connections(), None),
                    ("presence, HTTP", presence, api_process),
                ]  # fmt: skip
                for name, (url, floor) in floors.items():
                    floor_http = clients.enter_context(
                        httpx.Client(base_url=url, headers=http.headers, timeout=10)
                    )
                    call = functools.partial(post, client=floor_http, path="/")
                    kinds.append((name, call, psutil.Process(floor.pid)))
                rows = [
                    {"measure": name, "target": target.label, "users": users,
                     **_timed(call, calls, process)}
                    for name, call, process in kinds
                ]  # fmt: skip
            client.close()
        finally:
            for process in started:
                process.kill()
                process.wait(10)
            server.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", metavar="REV", help="also run the job API at this commit")
    args = parser.parse_args()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    targets = [INSIGHT]
    if args.baseline:
        commit, code = checkout(args.baseline)
        targets.append(Target("insight", code=code, commit=commit))
    ratios: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for target in targets:
            rows = measure(args.calls, target=target)
            for row in rows:
                print(json.dumps(row), flush=True)
            cpu = {row["measure"]: row["cpu_us_per_call"] for row in rows}
            for name in (HTTP_PUBLISH, *FLOORS):
                if name in cpu:
                    label = target.label if name == HTTP_PUBLISH else f"{target.label} {name}"
                    ratios.setdefault(label, []).append(cpu[name] / cpu[BASELINE])
            if FLOOR_EVALSHA in cpu:
                label = f"{target.label}: HTTP publish CPU / {FLOOR_EVALSHA} CPU"
                ratios.setdefault(label, []).append(cpu[HTTP_PUBLISH] / cpu[FLOOR_EVALSHA])
    for label, values in ratios.items():
        what = label if ":" in label else f"{label}: HTTP CPU / direct publish CPU"
        print(
            f"# {what}, median of {len(values)}: "
            f"{statistics.median(values):.2f}x ({', '.join(f'{v:.2f}' for v in values)})"
        )


if __name__ == "__main__":
    main()
