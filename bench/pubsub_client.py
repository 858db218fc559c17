"""What the edge's own sharded pub/sub client saves over redis-py's, per message.

Both read the same sharded channels from one private Redis, in a process of their own, while
a producer SPUBLISHes announcements as the append script does: the edge's client
(`realtime.broker.pubsub_node.NodeSubscriptions`, replies parsed in the transport's callback) and
redis-py's asyncio PubSub (`ssubscribe`, then `get_message` in a loop, as a reader task
would). Printed: CPU microseconds per message of each consumer process, medians of the
runs, and the ratio.

    .venv/bin/python -m bench.pubsub_client --messages 100000 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

import redis

from cli.local_redis import LocalRedis, free_port
from realtime.frames import announcement

CHANNELS = [f"insight:{{user:bench-{n}}}:live".encode() for n in range(100)]
SPAWN = multiprocessing.get_context("spawn")


def _consume(kind: str, url: str, expected: int, pipe: Connection) -> None:
    """Subscribe, report ready, count `expected` messages, report the CPU they took."""
    asyncio.run(_consume_async(kind, url, expected, pipe))


async def _consume_async(kind: str, url: str, expected: int, pipe: Connection) -> None:
    done = asyncio.Event()
    count = 0

    def on_message(channel: bytes, data: bytes) -> None:
        nonlocal count
        count += 1
        if count >= expected:
            done.set()

    if kind == "insight":
        from realtime.broker.pubsub_node import NodeSubscriptions

        confirmed: set[bytes] = set()
        subscribed = asyncio.Event()

        def on_confirmed(channels: set[bytes]) -> None:
            confirmed.update(channels)
            if len(confirmed) == len(CHANNELS):
                subscribed.set()

        node = NodeSubscriptions(
            url,
            on_message,
            on_confirmed=on_confirmed,
            on_lost=lambda channels: None,
            on_dropped=lambda channels: None,
            on_refused=lambda channels, error: None,
        )
        node.start()
        for channel in CHANNELS:
            node.want(channel)
        await subscribed.wait()
        started = time.process_time()
        pipe.send("ready")
        await done.wait()
    else:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(url)
        pubsub = client.pubsub()
        await pubsub.ssubscribe(*CHANNELS)
        for _ in CHANNELS:
            while (await pubsub.get_message(timeout=1.0)) is None:
                pass
        started = time.process_time()
        pipe.send("ready")
        while count < expected:
            message = await pubsub.get_message(timeout=5.0)
            if message is not None and message["type"] == "smessage":
                on_message(message["channel"], message["data"])
    pipe.send(time.process_time() - started)


def measure(kind: str, url: str, messages: int) -> float:
    """CPU µs per message of one consumer process of `kind`."""
    parent, child = SPAWN.Pipe()
    consumer = SPAWN.Process(target=_consume, args=(kind, url, messages, child))
    consumer.start()
    try:
        if not parent.poll(30) or parent.recv() != "ready":
            raise RuntimeError(f"{kind} consumer did not subscribe")
        producer = redis.Redis.from_url(url)
        body = json.dumps({"type": "ui_update", "data": {"n": 0}})
        pipe = producer.pipeline(transaction=False)
        for n in range(messages):
            channel = CHANNELS[n % len(CHANNELS)]
            pipe.spublish(channel, announcement("", f"u1.{n}-0", body))
            if n % 1000 == 999:
                pipe.execute()
        pipe.execute()
        if not parent.poll(60):
            raise RuntimeError(f"{kind} consumer did not receive every message")
        cpu = float(parent.recv())
        producer.close()
        return cpu / messages * 1e6
    finally:
        consumer.join(10)
        if consumer.is_alive():
            consumer.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    figures: dict[str, list[float]] = {"insight": [], "redis-py": []}
    with tempfile.TemporaryDirectory() as scratch:
        server = LocalRedis(free_port(), Path(scratch) / "redis").start()
        try:
            for _ in range(args.repeats):
                for kind in figures:  # one after the other in each repeat: drifts hit both
                    figures[kind].append(measure(kind, server.url, args.messages))
        finally:
            server.stop()
    ours = statistics.median(figures["insight"])
    theirs = statistics.median(figures["redis-py"])
    print(
        json.dumps(
            {
                "messages": args.messages,
                "runs": args.repeats,
                "insight_cpu_us_per_message": round(ours, 2),
                "redis_py_cpu_us_per_message": round(theirs, 2),
                "redis_py_over_insight": round(theirs / ours, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
