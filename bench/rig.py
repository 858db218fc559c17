"""One target set up for measuring: a private Redis (or a Redis Cluster already running),
its server processes, load client processes holding the users' connections, and producer
processes pushing events (`bench.producer`).

The rig runs a stretch of traffic at a fixed rate and measures what its processes spent on
it; `bench.window` turns that into a `Window`. Every process is real and separate, so the
figures include every hop a deployment has.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import psutil
import redis

from bench import loadclient
from bench.producer import ServerUsage, Traffic, Usage, produce
from bench.targets import Target
from bench.window import Window, quantile_ms, summarise, with_masters
from cli.local_redis import LocalRedis, free_port
from tests.local_cluster import LocalCluster

SPAWN = multiprocessing.get_context("spawn")
DRAIN_TIMEOUT = 15.0  # after the producers stop, how long in-flight events may take to land


class Rig:
    """A target with its Redis, `servers` server processes and `clients` client processes.

    With `cluster`, that running Redis Cluster takes the private Redis's place: servers and
    producers get the URL of one of its nodes (they find the rest), and Redis CPU is summed
    over every node, masters and replicas. The cluster is the caller's to stop. `client` is
    the load client processes' entry point (`bench.churnclient.run` adds churn)."""

    def __init__(
        self,
        target: Target,
        *,
        servers: int = 1,
        clients: int = 1,
        cluster: LocalCluster | None = None,
        client: Callable[[Connection, Target, int], None] = loadclient.run,
    ) -> None:
        self.target = target
        self.client_entry = client  # each load client process's entry point
        self.server_count = servers if target.has_server else 0
        self.client_count = clients
        self.workdir = Path(tempfile.mkdtemp(prefix=f"insight-bench-{target.name}-"))
        self.cluster = cluster
        self.redis = None if cluster else LocalRedis(free_port(), self.workdir / "redis")
        self.ports = [free_port() for _ in range(self.server_count)]
        self.servers: list[psutil.Popen | Any] = []
        self.pipes: list[Connection] = []
        self.client_processes: list[SpawnProcess] = []
        self.users: list[str] = []

    def __enter__(self) -> Self:
        if self.redis is not None:
            self.redis.start()
        self.servers = [self.target.start(port, self.redis_url) for port in self.ports]
        for _ in range(self.client_count):
            ours, theirs = SPAWN.Pipe()
            process = SPAWN.Process(
                target=self.client_entry,
                args=(theirs, self.target, self.redis_port),
                daemon=True,
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
        if self.redis is not None:
            self.redis.stop()

    @property
    def redis_url(self) -> str:
        return self.cluster.url if self.cluster is not None else self._redis().url

    @property
    def redis_port(self) -> int:
        return urlsplit(self.redis_url).port or 6379

    def _redis(self) -> LocalRedis:
        assert self.redis is not None
        return self.redis

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

    def each(self, name: str, timeout: float = 600, **kwargs: Any) -> list[Any]:
        """Ask every load client process the same command; their answers, in order."""
        return self._call(name, [kwargs for _ in self.pipes], timeout)

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

    def server_cpu(self) -> float:
        """The server processes' CPU seconds so far (user and system)."""
        return self._usage().servers.cpu

    def _redis_pids(self) -> dict[int, int]:
        """Every Redis node's process by port: the private Redis, or each cluster node."""
        nodes = self.cluster.nodes if self.cluster is not None else [self._redis()]
        return {node.port: node.process.pid for node in nodes if node.process is not None}

    def _masters(self) -> list[int]:
        return self.cluster.masters() if self.cluster is not None else [self._redis().port]

    def _usage(self) -> Usage:
        """What the servers and each Redis node have used so far."""
        servers = self._server_processes()
        times = [p.cpu_times() for p in servers]
        nodes = {
            port: sum(psutil.Process(pid).cpu_times()[:2])
            for port, pid in self._redis_pids().items()
        }
        return Usage(
            ServerUsage(
                cpu=sum(t.user + t.system for t in times),
                kernel=sum(t.system for t in times),
                wakeups=sum(p.num_ctx_switches().voluntary for p in servers),
            ),
            nodes,
        )

    @staticmethod
    def _commands(ports: list[int]) -> dict[int, int]:
        """Commands each node has processed so far (INFO stats)."""
        counts = {}
        for port in ports:
            with redis.Redis(host="127.0.0.1", port=port, socket_timeout=5) as client:
                counts[port] = int(client.info("stats")["total_commands_processed"])
        return counts

    # -- traffic --------------------------------------------------------------------------------

    def start(
        self, rate: float, seconds: float, producers: int = 1, producer: Target | None = None
    ) -> Traffic:
        """Start `producers` processes publishing `rate` events/s in all, as `producer`
        publishes (by default, as the rig's target does)."""
        self._call("take", [{} for _ in self.pipes])  # forget whatever came before
        outputs = [self.workdir / f"sent-{time.monotonic_ns()}-{i}.json" for i in range(producers)]
        processes = [
            SPAWN.Process(
                target=produce,
                args=(
                    producer or self.target,
                    self.redis_url,
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
        masters = self._masters()
        commands_before = self._commands(masters)
        usage_before = self._usage()
        for process in processes:
            process.start()
        return Traffic(rate, seconds, processes, outputs, usage_before, masters, commands_before)

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
        after, before = self._usage(), traffic.usage_before
        commands_after = self._commands(traffic.masters)
        nodes = {port: cpu - before.nodes.get(port, 0.0) for port, cpu in after.nodes.items()}
        records = [r for batch in self._call("take", [{} for _ in self.pipes]) for r in batch]
        window = summarise(
            self.target.label,
            traffic,
            sent,
            records,
            after.servers.since(before.servers) if self.servers else None,
            sum(nodes.values()),
            sum(p["cpu_seconds"] for p in produced),
        )
        commands = {p: commands_after[p] - traffic.commands_before[p] for p in traffic.masters}
        calls = sorted(call for output in produced for call in output["calls"])
        return replace(
            with_masters(window, nodes, commands),
            publish_call_p50_ms=quantile_ms(calls, 0.5),
            publish_call_p99_ms=quantile_ms(calls, 0.99),
        )

    def traffic(
        self, rate: float, seconds: float, producers: int = 1, producer: Target | None = None
    ) -> Window:
        return self.finish(self.start(rate, seconds, producers, producer))

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
