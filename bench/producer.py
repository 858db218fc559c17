"""The producer: a separate process publishing events at a fixed rate to random users, as an
application's workers would, and `Traffic`, the producers a rig has under way.

Producers are processes of their own so that their CPU is measured apart from the servers'
and Redis's, and so that publishing never competes with the load clients for one interpreter.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from pathlib import Path

from bench.targets import Target


def produce(
    target: Target,
    redis_url: str,
    users: list[str],
    rate: float,
    seconds: float,
    index: int,
    of: int,
    out: str,
) -> None:
    """A producer process: `rate` events/s to random users; event numbers are index + k*of,
    so several producers never reuse one. Each event carries the wall clock just before the
    publish call, which the client subtracts on arrival; how long each call took is kept."""
    publish = target.publisher(redis_url)
    rng = random.Random(index)
    sent: dict[str, list[int]] = {}
    calls: list[int] = []
    started = time.perf_counter()
    cpu = time.process_time()
    k = 0
    while (elapsed := time.perf_counter() - started) < seconds:
        due = int(elapsed * rate) + 1
        while k < due:
            user = rng.choice(users)
            n = index + k * of
            called = time.time_ns()
            publish(user, {"t": called, "to": user, "n": n})
            calls.append(time.time_ns() - called)
            sent.setdefault(user, []).append(n)
            k += 1
        time.sleep(0.0005)
    cpu_seconds = time.process_time() - cpu
    Path(out).write_text(json.dumps({"sent": sent, "cpu_seconds": cpu_seconds, "calls": calls}))


@dataclass(frozen=True)
class ServerUsage:
    """The servers' CPU seconds, of them those spent in the kernel, and how often their main
    threads, which run their event loops, woke from a wait (voluntary context switches): so
    far, or over a window (`since`)."""

    cpu: float
    kernel: float
    wakeups: int

    def since(self, before: ServerUsage) -> ServerUsage:
        return ServerUsage(
            self.cpu - before.cpu, self.kernel - before.kernel, self.wakeups - before.wakeups
        )


@dataclass(frozen=True)
class Usage:
    """What the rig's processes had used at one moment: the servers', and each Redis node's
    CPU seconds by port."""

    servers: ServerUsage
    nodes: dict[int, float]


@dataclass
class Traffic:
    """Producers under way; `Rig.finish` turns them into a Window."""

    rate: float
    seconds: float
    producers: list[SpawnProcess]
    outputs: list[Path]
    usage_before: Usage
    masters: list[int]
    commands_before: dict[int, int]
