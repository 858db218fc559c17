"""Scenario 15: one event to every socket of one edge (issue 25, goal 3).

`sockets` connections on one server process; then `broadcasts` events, one at a time, each
addressed to all of them: Insight's `UIManager.broadcast()` (every connection listens as
everyone), and broadcaster's publish on the one channel all its sockets subscribed to. The next
event goes once every socket has the previous one, so each is measured alone:

- `last_frame_ms`: from the publish call to the last socket's frame (the median over events);
- `frame_p50_ms`: the median frame's latency, over every frame of every event;
- `server_cpu_ms_per_broadcast`, `server_cpu_us_per_frame`: the server process's CPU;
- `delivered_pct` and `duplicated`: every socket gets each event once.

On Insight each receiver's frame carries its own resume cursor, spliced into the shared body
(about 0.7 µs a receiver, `bench.cursor_cost`); broadcaster writes one prebuilt message. The
load clients share the machine's two cores with the server, so the last frame's time is the
machine's as much as the server's; the CPU figures are the server's alone.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from bench.client_stats import Record
from bench.rig import SPAWN, Rig
from bench.targets import BROADCAST_USER, EVERYONE, Target

Row = dict[str, Any]
WAIT_SECONDS = 60  # for every socket to get one event; past it, what is missing is lost


@dataclass(frozen=True)
class BroadcastSizes:
    sockets: int = 10_000
    broadcasts: int = 20


QUICK_BROADCAST = BroadcastSizes(sockets=50, broadcasts=3)


def _producer(pipe: Connection, target: Target, redis_url: str) -> None:
    """A producer process: publish event n to everyone each time the scenario sends n."""
    publish = target.broadcast_publisher(redis_url)
    while (n := pipe.recv()) is not None:
        publish({"t": time.time_ns(), "to": EVERYONE, "n": n})
        pipe.send(n)


def broadcast(sizes: BroadcastSizes, targets: tuple[Target, ...]) -> Iterator[Row]:
    for target in targets:
        if target.name not in ("insight", "broadcaster"):
            continue
        users = [f"{BROADCAST_USER}{i}" for i in range(sizes.sockets)]
        with Rig(target, clients=2) as rig:
            # The first socket alone: broadcaster's `subscribe` replaces the channel's set of
            # subscribers when several join while its first subscription is in flight, and
            # all but the last of those then get nothing (broadcaster/_base.py).
            connect_seconds = rig.connect(users[:1]) + rig.connect(users[1:])
            yield {
                "target": target.label,
                "sockets": sizes.sockets,
                "connect_seconds": round(connect_seconds, 2),
                **_broadcasts(rig, target, sizes),
            }


def _broadcasts(rig: Rig, target: Target, sizes: BroadcastSizes) -> Row:
    ours, theirs = SPAWN.Pipe()
    producer = SPAWN.Process(target=_producer, args=(theirs, target, rig.redis_url))
    producer.start()
    try:
        rig.each("take")  # nothing from the connects
        cpu_before = rig.server_cpu()
        done = 0
        while done < sizes.broadcasts:
            ours.send(done)
            ours.recv()
            done += 1
            if not _arrived(rig, sizes.sockets * done):
                break  # the rest would not be measured alone
        cpu_after = rig.server_cpu()
        records: list[Record] = [r for batch in rig.each("take") for r in batch]
    finally:
        ours.send(None)
        producer.join(10)
    return _figures(records, sizes, done, cpu_after - cpu_before)


def _arrived(rig: Rig, frames: int) -> bool:
    """Whether the load clients have `frames` frames in all, waiting up to WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while sum(rig.each("count")) < frames:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _figures(records: list[Record], sizes: BroadcastSizes, done: int, server_cpu: float) -> Row:
    """The figures of `done` broadcasts (fewer than asked when one never reached every
    socket); the CPU is per broadcast made, delivery against every one asked for."""
    by_event: dict[int, list[int]] = {}
    copies = Counter((user, n) for user, n, _, _ in records)
    for _, n, latency_ns, _ in records:
        by_event.setdefault(n, []).append(latency_ns)
    expected = sizes.sockets * sizes.broadcasts
    frames = len(copies)  # each socket's copy of each event, once
    everything = [latency for latencies in by_event.values() for latency in latencies]
    return {
        "broadcasts": sizes.broadcasts,
        "delivered_pct": round(100 * frames / expected, 2),
        "duplicated": sum(count - 1 for count in copies.values()),
        "last_frame_ms": _ms(statistics.median(max(v) for v in by_event.values()))
        if by_event
        else None,
        "first_frame_ms": _ms(statistics.median(min(v) for v in by_event.values()))
        if by_event
        else None,
        "frame_p50_ms": _ms(statistics.median(everything)) if everything else None,
        "server_cpu_ms_per_broadcast": round(server_cpu / done * 1e3, 2),
        "server_cpu_us_per_frame": round(server_cpu / (sizes.sockets * done) * 1e6, 2),
    }


def _ms(nanoseconds: float) -> float:
    return round(nanoseconds / 1e6, 2)
