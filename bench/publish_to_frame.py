"""Time from a UIManager call to the frame at a WebSocket client, with U connected users.

Starts its own Redis and one edge process; a producer process publishes `ui_update` events to
random connected users at a steady rate, each carrying `time.time_ns()` taken just before the
call; the client process measures arrival minus that stamp. Prints p50/p90/p99/max and counts
lost, misrouted and duplicated events.

    .venv/bin/python -m bench.publish_to_frame --users 1000 --rate 500 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import websockets

from bench.common import start_uvicorn, token
from cli.local_redis import LocalRedis, free_port


def produce(redis_url: str, users: list[str], rate: float, seconds: float, out: str) -> None:
    os.environ.update(REDIS_URL=redis_url, ENVIRONMENT="development")
    import random

    from realtime import UIManager

    rng = random.Random(1)
    sent: dict[str, list[str]] = {}
    interval = 1.0 / rate
    start = time.perf_counter()
    n = 0
    while (elapsed := time.perf_counter() - start) < seconds:
        due = n * interval
        if elapsed < due:
            time.sleep(due - elapsed)
        user = rng.choice(users)
        event_id = UIManager.for_user(user).update_ui({"t": time.time_ns(), "to": user})
        sent.setdefault(user, []).append(event_id)
        n += 1
    Path(out).write_text(json.dumps(sent))


async def listen(
    url: str, tokens: dict[str, str], on_all_ready: Callable[[], None], seconds: float
) -> dict[str, list[tuple[str, int, str]]]:
    """Connect every user, call `on_all_ready`, then record (id, latency ns, addressee)."""
    received: dict[str, list[tuple[str, int, str]]] = {u: [] for u in tokens}
    connected = asyncio.Barrier(len(tokens) + 1)

    async def one(user: str, token: str) -> None:
        async with websockets.connect(f"{url}?token={token}", compression=None) as ws:
            await ws.recv()  # insight_ready
            await connected.wait()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    async for raw in ws:
                        now = time.time_ns()
                        frame = json.loads(raw)
                        data = frame["data"]
                        received[user].append((frame["id"], now - data["t"], data["to"]))

    tasks = [asyncio.create_task(one(u, t)) for u, t in tokens.items()]
    async with asyncio.timeout(120):
        await connected.wait()
    on_all_ready()
    await asyncio.gather(*tasks)
    return received


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=1)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="insight-bench-"))
    redis_server = LocalRedis(free_port(), workdir / "redis").start()
    port = free_port()
    edge = start_uvicorn("realtime.main:app", port, redis_server.url)
    try:
        users = [f"bench-{i}" for i in range(args.users)]
        tokens = {u: token(u) for u in users}
        out = workdir / "sent.json"
        producer = multiprocessing.get_context("spawn").Process(
            target=produce, args=(redis_server.url, users, args.rate, args.seconds, str(out))
        )

        received = asyncio.run(
            listen(
                f"ws://127.0.0.1:{port}/api/v1/insight", tokens, producer.start, args.seconds + 3
            )
        )
        producer.join()
        sent = json.loads(out.read_text())
    finally:
        edge.terminate()
        edge.wait(10)
        redis_server.stop()

    latencies = sorted(lat for frames in received.values() for _, lat, _ in frames)
    misrouted = sum(1 for u, frames in received.items() for _, _, to in frames if to != u)
    duplicated = sum(len(f) - len({i for i, _, _ in f}) for f in received.values())
    lost = sum(len(set(ids) - {i for i, _, _ in received[u]}) for u, ids in sent.items())
    total = sum(len(ids) for ids in sent.values())

    def ms(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1e6

    print(
        json.dumps(
            {
                "users": args.users,
                "rate": args.rate,
                "published": total,
                "delivered": len(latencies),
                "lost": lost,
                "misrouted": misrouted,
                "duplicated": duplicated,
                "p50_ms": round(ms(0.50), 3),
                "p90_ms": round(ms(0.90), 3),
                "p99_ms": round(ms(0.99), 3),
                "max_ms": round(latencies[-1] / 1e6, 3),
                "mean_ms": round(statistics.fmean(latencies) / 1e6, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
