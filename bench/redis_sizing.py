"""How much Redis memory Insight takes: per recipient, per publish, per connected user.

For sizing `maxmemory` (docs: operations). Measured on a Redis of its own, with the real
scripts: `used_memory` before and after making N of each thing, divided by N.

- a recipient who only connected: the log's metadata, made by the first read of its log
  (it lives as long as the log would: EVENTS_MAX_AGE_SECONDS);
- an event published without an idempotency key: its Stream entry, the log's metadata, and
  the key that guards the call's own retries (kept RETRY_KEY_TTL_SECONDS);
- an event published with an idempotency key: the same, and the key (kept for retention);
- one more event in a log that already holds some, with or without a key.

    .venv/bin/python -m bench.redis_sizing --recipients 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import redis
import redis.asyncio

from cli.local_redis import LocalRedis, free_port
from realtime import PublishOptions
from realtime.eventlog import AsyncEventLog, EventLog, Retention
from realtime.frames import Position
from realtime.recipients import Recipient

RETENTION = Retention(max_len=1000, max_age_seconds=3600)
BODY = '{"type":"ui_toast","title":"Order created","description":"Order #17","variant":"success"}'


def _used(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def _per_item(client: redis.Redis, count: int, make: Callable[[int], object]) -> float:
    before = _used(client)
    for n in range(count):
        make(n)
    return (_used(client) - before) / count


def measure(url: str, count: int) -> dict[str, float]:
    """Bytes per item, for each kind of item (see the module's doc)."""
    client = redis.Redis.from_url(url)
    log = EventLog(client, RETENTION)

    async def connect_all(prefix: str) -> None:
        reader = AsyncEventLog(redis.asyncio.Redis.from_url(url), RETENTION)
        start = Position("u", None, (0, 0))
        for n in range(count):
            page = reader.replay_page(
                Recipient.user(f"{prefix}{n}"), start, check=True, max_entries=1, max_bytes=1
            )
            await page
        await reader.client.aclose()

    before = _used(client)
    asyncio.run(connect_all("connected-"))
    connected = (_used(client) - before) / count

    def publish(prefix: str, keyed: bool) -> Callable[[int], object]:
        def one(n: int) -> object:
            key = f"k{n}-{uuid.uuid4().hex}" if keyed else None
            recipient = Recipient.user(f"{prefix}{n}")
            return log.append(recipient, BODY, 300, PublishOptions(idempotency_key=key))

        return one

    figures = {
        "recipient_connected_only": connected,
        "first_event_without_key": _per_item(client, count, publish("plain-", False)),
        "first_event_with_key": _per_item(client, count, publish("keyed-", True)),
        "another_event_without_key": _per_item(client, count, publish("plain-", False)),
        "another_event_with_key": _per_item(client, count, publish("keyed-", True)),
    }
    client.close()
    return {name: round(value) for name, value in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipients", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        server = LocalRedis(free_port(), Path(directory)).start()
        try:
            figures = measure(server.url, args.recipients)
        finally:
            server.stop()
    print(json.dumps({"recipients": args.recipients, "bytes": figures}))


if __name__ == "__main__":
    main()
