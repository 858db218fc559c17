"""A `Window`: one stretch of traffic at a fixed rate, and what it comes to: what was
published and delivered, lost, misrouted or duplicated, the latencies, and the CPU that
servers, Redis and producers spent per event.

Kept apart from the rig that runs the traffic: every figure of `make bench` rests on this
counting, so it reads in one place, with nothing about processes around it.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from bench.client_stats import Record
from bench.producer import ServerUsage, Traffic


@dataclass
class Window:
    """One measured stretch of traffic."""

    target: str
    rate: float  # offered, events/s
    seconds: float
    published: int
    delivered: int
    lost: int
    misrouted: int
    duplicated: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    delivered_per_s: float
    server_cpu_us_per_event: float | None
    redis_cpu_us_per_event: float
    producer_cpu_us_per_event: float
    # Of the server's CPU, what the kernel spent (the socket reads and writes, the waits and
    # wakeups), and how often its event loop woke from a wait: at low rates each event wakes
    # it, and the kernel's part is then about the same for every server, whatever its own code
    # costs (docs/benchmarks.md).
    server_kernel_us_per_event: float | None = None
    server_wakeups_per_event: float | None = None
    # The masters' CPU alone (replicas left out); with several masters, the busiest one's
    # share of the masters' CPU and of the commands they processed, in percent.
    masters_cpu_us_per_event: float | None = None
    busiest_master_cpu_pct: float | None = None
    busiest_master_commands_pct: float | None = None
    # How long a producer's publish call took to return (with EVENTS_MIN_REPLICAS, the WAIT).
    publish_call_p50_ms: float | None = None
    publish_call_p99_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def with_masters(window: Window, node_cpu: dict[int, float], commands: dict[int, int]) -> Window:
    """The window with the masters' CPU per event and (with several masters) the busiest
    one's share of the masters' CPU and of their commands, in percent."""
    cpu = [node_cpu.get(port, 0.0) for port in commands]
    several = len(cpu) > 1 and sum(cpu) > 0 and sum(commands.values()) > 0
    return replace(
        window,
        masters_cpu_us_per_event=round(sum(cpu) / max(window.published, 1) * 1e6, 1),
        busiest_master_cpu_pct=round(100 * max(cpu) / sum(cpu), 1) if several else None,
        busiest_master_commands_pct=(
            round(100 * max(commands.values()) / sum(commands.values()), 1) if several else None
        ),
    )


def summarise(
    target: str,
    traffic: Traffic,
    sent: dict[str, set[int]],
    records: list[Record],
    server: ServerUsage | None,
    redis_cpu: float,
    producer_cpu: float,
) -> Window:
    received: dict[str, list[int]] = {}
    misrouted = 0
    for user, n, _, addressed_to in records:
        received.setdefault(user, []).append(n)
        misrouted += addressed_to != user
    lost = sum(len(numbers - set(received.get(user, ()))) for user, numbers in sent.items())
    duplicated = sum(len(ns) - len(set(ns)) for ns in received.values())
    latencies = sorted(latency for _, _, latency, _ in records)
    published = sum(len(numbers) for numbers in sent.values())
    delivered = len(latencies)
    return Window(
        target=target,
        rate=traffic.rate,
        seconds=traffic.seconds,
        published=published,
        delivered=delivered,
        lost=lost,
        misrouted=misrouted,
        duplicated=duplicated,
        p50_ms=quantile_ms(latencies, 0.5),
        p90_ms=quantile_ms(latencies, 0.9),
        p99_ms=quantile_ms(latencies, 0.99),
        max_ms=round(latencies[-1] / 1e6, 3) if latencies else None,
        delivered_per_s=round(delivered / traffic.seconds, 1),
        server_cpu_us_per_event=_per_event(server.cpu * 1e6 if server else None, delivered),
        redis_cpu_us_per_event=round(redis_cpu / max(published, 1) * 1e6, 1),
        producer_cpu_us_per_event=round(producer_cpu / max(published, 1) * 1e6, 1),
        server_kernel_us_per_event=_per_event(server.kernel * 1e6 if server else None, delivered),
        server_wakeups_per_event=_per_event(server.wakeups if server else None, delivered, 2),
    )


def _per_event(total: float | None, events: int, digits: int = 1) -> float | None:
    """`total` per event delivered (None without a server or without deliveries)."""
    return round(total / events, digits) if total is not None and events else None


def quantile_ms(ordered_ns: list[int], q: float) -> float | None:
    """The `q` quantile of nanoseconds already in order, in milliseconds."""
    if not ordered_ns:
        return None
    return round(ordered_ns[min(len(ordered_ns) - 1, int(q * len(ordered_ns)))] / 1e6, 3)


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None
