"""Publish-to-frame latency in the first moment of a socket, against a socket long open.

A page opens its socket and a fast job answers at once: the event is published while the
edge is still subscribing the new connection and catching it up from the log, so it reaches
the socket through the replay rather than the live feed. This measures what that costs: each
round opens a socket, publishes to its user the instant the handshake completes, and times
the publish until the frame arrives; the steady rounds publish to a socket that has been
live for a while. Both run against one edge and one Redis, in the same run.

    .venv/bin/python -m bench.connect_latency --rounds 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets

from bench.common import SECRET, start_edge, token
from cli.local_redis import LocalRedis, free_port
from realtime.eventlog import AsyncEventLog
from realtime.frames import event_id_of
from realtime.publisher import AsyncUIManager
from realtime.recipients import Recipient

Row = dict[str, Any]


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _until_id(ws: websockets.ClientConnection, event_id: str) -> None:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame["type"].startswith("ui_") and event_id_of(frame["id"]) == event_id:
            return


async def _rounds(edge_url: str, redis_url: str, rounds: int) -> tuple[list[float], list[float]]:
    """(at open, steady) publish-to-frame times in ms."""
    import redis.asyncio

    from core.config import Settings

    client = redis.asyncio.Redis.from_url(redis_url)
    log = AsyncEventLog(client, Settings(jwt_secret=SECRET).retention)
    at_open: list[float] = []
    steady: list[float] = []
    try:
        for round_ in range(rounds):
            user = f"open-{round_}"
            ui = AsyncUIManager(Recipient.user(user), log)
            async with websockets.connect(
                f"{edge_url}?token={token(user)}", compression=None
            ) as ws:
                started = time.perf_counter()
                event_id = await ui.refresh()
                await _until_id(ws, event_id)
                at_open.append((time.perf_counter() - started) * 1000)
        async with websockets.connect(
            f"{edge_url}?token={token('steady')}", compression=None
        ) as ws:
            await ws.recv()  # insight_ready: the socket is live
            ui = AsyncUIManager(Recipient.user("steady"), log)
            for _ in range(rounds):
                started = time.perf_counter()
                event_id = await ui.refresh()
                await _until_id(ws, event_id)
                steady.append((time.perf_counter() - started) * 1000)
    finally:
        await client.aclose()
    return at_open, steady


def measure(rounds: int) -> Row:
    """One run: a private Redis and edge, `rounds` of each kind."""
    with tempfile.TemporaryDirectory() as scratch:
        server = LocalRedis(free_port(), Path(scratch) / "redis").start()
        port = free_port()
        edge = start_edge(port, server.url)
        try:
            url = f"ws://127.0.0.1:{port}/api/v1/insight"
            at_open, steady = asyncio.run(_rounds(url, server.url, rounds))
        finally:
            edge.kill()
            edge.wait(10)
            server.stop()
    row: Row = {"target": "insight", "rounds": rounds}
    for name, values in (("open", at_open), ("steady", steady)):
        row[f"{name}_p50_ms"] = round(statistics.median(values), 3)
        row[f"{name}_p99_ms"] = round(_percentile(values, 0.99), 3)
    row["open_over_steady_p50"] = round(row["open_p50_ms"] / row["steady_p50_ms"], 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    for _ in range(args.repeats):
        print(json.dumps(measure(args.rounds)), flush=True)


if __name__ == "__main__":
    main()
