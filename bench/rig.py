"""One target set up for measuring: a private Redis, its server processes, load client
processes holding the users' connections, and producer processes pushing events.

A `Window` is one stretch of traffic at a fixed rate: what was published and delivered, the
latencies, and the CPU that servers, Redis and producers spent on it. Every process is real
and separate, so the figures include every hop a deployment has.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psutil

from bench import loadclient
from bench.targets import Target
from cli.local_redis import LocalRedis, free_port

SPAWN = multiprocessing.get_context("spawn")
DRAIN_TIMEOUT = 15.0  # after the producers stop, how long in-flight events may take to land


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    publish call, which the client subtracts on arrival."""
    publish = target.publisher(redis_url)
    rng = random.Random(index)
    sent: dict[str, list[int]] = {}
    started = time.perf_counter()
    cpu = time.process_time()
    k = 0
    while (elapsed := time.perf_counter() - started) < seconds:
        due = int(elapsed * rate) + 1
        while k < due:
            user = rng.choice(users)
            n = index + k * of
            publish(user, {"t": time.time_ns(), "to": user, "n": n})
            sent.setdefault(user, []).append(n)
            k += 1
        time.sleep(0.0005)
    cpu_seconds = time.process_time() - cpu
    Path(out).write_text(json.dumps({"sent": sent, "cpu_seconds": cpu_seconds}))


@dataclass
class Traffic:
    """Producers under way; `Rig.finish` turns them into a Window."""

    rate: float
    seconds: float
    producers: list[SpawnProcess]
    outputs: list[Path]
    cpu_before: tuple[float, float]


class Rig:
    """A target with its Redis, `servers` server processes and `clients` client processes."""

    def __init__(self, target: Target, *, servers: int = 1, clients: int = 1) -> None:
        self.target = target
        self.server_count = servers if target.has_server else 0
        self.client_count = clients
        self.workdir = Path(tempfile.mkdtemp(prefix=f"insight-bench-{target.name}-"))
        self.redis = LocalRedis(free_port(), self.workdir / "redis")
        self.ports = [free_port() for _ in range(self.server_count)]
        self.servers: list[psutil.Popen | Any] = []
        self.pipes: list[Connection] = []
        self.client_processes: list[SpawnProcess] = []
        self.users: list[str] = []

    def __enter__(self) -> Self:
        self.redis.start()
        self.servers = [self.target.start(port, self.redis.url) for port in self.ports]
        for _ in range(self.client_count):
            ours, theirs = SPAWN.Pipe()
            process = SPAWN.Process(
                target=loadclient.run, args=(theirs, self.target, self.redis_port), daemon=True
            )
            process.start()
            self.pipes.append(ours)
            self.client_processes.append(process)
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(("stop", {}))
        for process in self.client_processes:
            process.join(10)
            if process.is_alive():
                process.kill()
        for server in self.servers:
            if server is None:
                continue
            server.terminate()  # broadcaster may not stop while its subscribers wait: kill
            try:
                server.wait(5)
            except Exception:
                server.kill()
                server.wait(5)
        self.redis.stop()

    @property
    def redis_port(self) -> int:
        return self.redis.port

    # -- the load clients -------------------------------------------------------------------

    def _call(self, name: str, per_client: list[dict[str, Any]], timeout: float = 600) -> list[Any]:
        for pipe, kwargs in zip(self.pipes, per_client, strict=True):
            pipe.send((name, kwargs))
        results = []
        for pipe in self.pipes:
            if not pipe.poll(timeout):
                raise TimeoutError(f"load client did not answer {name} in {timeout}s")
            status, result = pipe.recv()
            if status != "ok":
                raise RuntimeError(f"load client failed {name}: {result}")
            results.append(result)
        return results

    def _split(self, users: list[str]) -> list[list[tuple[str, int]]]:
        """User i goes to server i mod servers and to client process i mod clients."""
        shares: list[list[tuple[str, int]]] = [[] for _ in self.pipes]
        for i, user in enumerate(users):
            port = self.ports[i % len(self.ports)] if self.ports else 0
            shares[i % len(shares)].append((user, port))
        return shares

    def connect(self, users: list[str], *, since: bool = False, concurrency: int = 500) -> float:
        """Connect `users` (on top of any already connected); seconds until all are ready."""
        shares = self._split(users)
        if not since:
            self._call("mint", [{"users": share} for share in shares])
            self.users.extend(users)
        started = time.perf_counter()
        self._call(
            "connect",
            [
                {"users": share, "since": since, "concurrency": max(1, concurrency // len(shares))}
                for share in shares
            ],
        )
        return time.perf_counter() - started

    def retries(self) -> int:
        """Connections the servers turned away with 1012/1013 and the clients retried."""
        return sum(self._call("retries", [{} for _ in self.pipes]))

    def drop(self) -> None:
        self._call("drop", [{} for _ in self.pipes])

    # -- resources ------------------------------------------------------------------------------

    def _server_processes(self) -> list[psutil.Process]:
        return [psutil.Process(server.pid) for server in self.servers if server is not None]

    def server_rss(self) -> int:
        return sum(p.memory_info().rss for p in self._server_processes())

    def _cpu(self) -> tuple[float, float]:
        servers = sum(sum(p.cpu_times()[:2]) for p in self._server_processes())
        assert self.redis.process is not None
        redis_cpu = sum(psutil.Process(self.redis.process.pid).cpu_times()[:2])
        return servers, redis_cpu

    # -- traffic --------------------------------------------------------------------------------

    def start(self, rate: float, seconds: float, producers: int = 1) -> Traffic:
        self._call("take", [{} for _ in self.pipes])  # forget whatever came before
        outputs = [self.workdir / f"sent-{time.monotonic_ns()}-{i}.json" for i in range(producers)]
        processes = [
            SPAWN.Process(
                target=produce,
                args=(
                    self.target,
                    self.redis.url,
                    self.users,
                    rate / producers,
                    seconds,
                    i,
                    producers,
                    str(outputs[i]),
                ),
            )
            for i in range(producers)
        ]
        cpu_before = self._cpu()
        for process in processes:
            process.start()
        return Traffic(rate, seconds, processes, outputs, cpu_before)

    def finish(self, traffic: Traffic) -> Window:
        for process in traffic.producers:
            process.join(traffic.seconds + 120)
            if process.exitcode != 0:
                raise RuntimeError(f"producer failed with {process.exitcode}")
        produced = [json.loads(path.read_text()) for path in traffic.outputs]
        sent: dict[str, set[int]] = {}
        for output in produced:
            for user, numbers in output["sent"].items():
                sent.setdefault(user, set()).update(numbers)
        published = sum(len(numbers) for numbers in sent.values())
        self._drain(published)
        (server_after, redis_after), (server_before, redis_before) = self._cpu(), traffic.cpu_before
        server_cpu, redis_cpu = server_after - server_before, redis_after - redis_before
        records = [r for batch in self._call("take", [{} for _ in self.pipes]) for r in batch]
        return summarise(
            self.target.name,
            traffic,
            sent,
            records,
            server_cpu if self.servers else None,
            redis_cpu,
            sum(p["cpu_seconds"] for p in produced),
        )

    def traffic(self, rate: float, seconds: float, producers: int = 1) -> Window:
        return self.finish(self.start(rate, seconds, producers))

    def _drain(self, published: int) -> None:
        """Wait until every published event arrived, or nothing more arrives for a second."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        last, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            count = sum(self._call("count", [{} for _ in self.pipes]))
            if count >= published:
                return
            if count != last:
                last, last_change = count, time.monotonic()
            elif time.monotonic() - last_change > 1.0:
                return
            time.sleep(0.05)


def summarise(
    target: str,
    traffic: Traffic,
    sent: dict[str, set[int]],
    records: list[loadclient.Record],
    server_cpu: float | None,
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

    def ms(q: float) -> float | None:
        if not latencies:
            return None
        return round(latencies[min(delivered - 1, int(q * delivered))] / 1e6, 3)

    return Window(
        target=target,
        rate=traffic.rate,
        seconds=traffic.seconds,
        published=published,
        delivered=delivered,
        lost=lost,
        misrouted=misrouted,
        duplicated=duplicated,
        p50_ms=ms(0.5),
        p90_ms=ms(0.9),
        p99_ms=ms(0.99),
        max_ms=round(latencies[-1] / 1e6, 3) if latencies else None,
        delivered_per_s=round(delivered / traffic.seconds, 1),
        server_cpu_us_per_event=(
            round(server_cpu / delivered * 1e6, 1) if server_cpu is not None and delivered else None
        ),
        redis_cpu_us_per_event=round(redis_cpu / max(published, 1) * 1e6, 1),
        producer_cpu_us_per_event=round(producer_cpu / max(published, 1) * 1e6, 1),
    )


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None
