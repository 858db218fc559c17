"""What publishing an application's own event costs, against one of the five, in the same run.

A private Redis, and this process publishing with UIManager as a Celery task does (one
connection, the process's registry loaded from INSIGHT_EVENT_MODULES). The kinds take turns
in batches of 100 publishes, each batch timed in CPU (time.process_time: model validation, the
registry's check, encoding, the Redis round trip's client side):

- `ui_toast`: `ui.publish(Toast(...))`, the seed's event;
- `bench_notice`: `ui.publish(Notice(...))`, the same fields as an application's own type
  (bench/declared_events.py);
- `ui_update, dict`: `ui.update_ui({...})` with data of no declared payload;
- `ui_update, JobProgress`: `ui.update_ui(JobProgress(...))`, a typed payload, checked strictly.

Prints each kind's median CPU µs per publish over the batches, and its ratio to its
comparison's: the median of the ratios of batches measured side by side.

    .venv/bin/python -m bench.app_events --events 2000 --rounds 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli.local_redis import LocalRedis, free_port
from realtime.broker.topology import sync_client
from realtime.eventlog import EventLog
from realtime.events import Toast
from realtime.payloads import JobProgress
from realtime.publisher import UIManager
from realtime.recipients import Recipient
from realtime.registry import event_registry
from realtime.settings import EventsSettings, events_settings

MODULE = "bench.declared_events"
# Each kind and the kind it is compared with.
PAIRS = {"bench_notice": "ui_toast", "ui_update, JobProgress": "ui_update, dict"}


def _kinds(ui: UIManager) -> dict[str, Callable[[int], object]]:
    from bench.declared_events import Notice

    return {
        "ui_toast": lambda n: ui.publish(Toast(title="Bench", description=str(n), variant="info")),
        "bench_notice": lambda n: ui.publish(
            Notice(title="Bench", description=str(n), variant="info")
        ),
        "ui_update, dict": lambda n: ui.update_ui(
            {
                "type": "bench_progress",
                "jobId": "j",
                "kind": "order",
                "status": "running",
                "percent": n % 100,
            }
        ),
        "ui_update, JobProgress": lambda n: ui.update_ui(
            JobProgress(jobId="j", kind="order", status="running", percent=n % 100)
        ),
    }


def _cpu_us(call: Callable[[int], object], events: int) -> float:
    started = time.process_time()
    for n in range(events):
        call(n)
    return (time.process_time() - started) / events * 1e6


def measure(events: int, rounds: int, batch: int = 100) -> list[dict[str, Any]]:
    """CPU µs per publish of each kind, and each pair's ratio: medians over `rounds` x
    (`events` / `batch`) batches. The kinds take turns batch by batch (in an order that
    alternates), so both sides of a ratio are measured within milliseconds of each other and
    a drift of this shared machine touches them alike; a ratio is the median of the batches'."""
    os.environ["INSIGHT_EVENT_MODULES"] = MODULE
    events_settings.cache_clear()
    event_registry.cache_clear()
    assert "bench_notice" in event_registry().app_events
    with tempfile.TemporaryDirectory() as scratch:
        server = LocalRedis(free_port(), Path(scratch) / "redis").start()
        try:
            client = sync_client(server.url, single_connection_client=True, socket_timeout=5)
            log = EventLog(client, EventsSettings().retention)
            kinds = _kinds(UIManager(Recipient.user("bench"), log))
            for call in kinds.values():  # warm: imports, validators, the script's SHA
                _cpu_us(call, min(200, events))
            samples: dict[str, list[float]] = {name: [] for name in kinds}
            order = list(kinds)
            for turn in range(rounds * max(1, events // batch)):
                for name in order if turn % 2 == 0 else reversed(order):
                    samples[name].append(_cpu_us(kinds[name], min(batch, events)))
            client.close()
        finally:
            server.stop()
    return [
        {
            "kind": name,
            "events": len(samples[name]) * min(batch, events),
            "cpu_us_per_publish": round(statistics.median(samples[name]), 2),
            "compared_with": PAIRS.get(name),
            "ratio": _ratio(samples[name], samples[PAIRS[name]]) if name in PAIRS else None,
        }
        for name in kinds
    ]


def _ratio(ours: list[float], theirs: list[float]) -> float:
    """The median of the paired batches' ratios."""
    return round(statistics.median(a / b for a, b in zip(ours, theirs, strict=True)), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    for row in measure(args.events, args.rounds):
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
