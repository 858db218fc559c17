"""An import of 1,000 orders with 1 and with 2 order workers (orders/s and the speed-up), and
the time from POST /jobs/{id}/cancel to the job's terminal `cancelled` job_progress.

Runs the real process set of `make run` (bench/order_to_toast.py: job_system) on a private
Redis and a fresh SQLite database; prints one JSON line per figure, the speed-up as the ratio
of two runs of the same invocation. Beside each import rate: the CPU the orders workers and
the whole process set used per order, and how many cores the set kept busy (the machine has
two), which says whether a second worker had anything to run on. Figures and how to read
them: docs/benchmarks.md.

    .venv/bin/python -m bench.job_batches --orders 1000 --cancels 20 --repeats 3
    # the same on PostgreSQL (an empty database; migrated by the benchmark):
    .venv/bin/python -m bench.job_batches --database-url postgresql+psycopg://postgres@127.0.0.1/bench
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import psutil
import psycopg
import websockets
from sqlalchemy import make_url

from bench.common import token
from bench.order_to_toast import ORDER, job_system
from cli.supervisor import Ports

Frame = dict[str, Any]


async def _until(ws: Any, job_id: str, done: Callable[[Frame], bool], timeout: float) -> float:
    """Reads frames until one of `job_id`'s satisfies `done`; when it arrived."""
    async with asyncio.timeout(timeout):
        async for raw in ws:
            frame = json.loads(raw)
            if frame.get("jobId") == job_id and done(frame):
                return time.perf_counter()
    raise EOFError("the socket closed")


def _terminal(status: str) -> Callable[[Frame], bool]:
    def match(frame: Frame) -> bool:
        data = frame.get("data") or {}
        return bool(data.get("type") == "job_progress" and data.get("status") == status)

    return match


def _progress(frame: Frame) -> bool:
    return "done" in (frame.get("data") or {})


def _orders(count: int) -> dict[str, Any]:
    item: dict[str, Any] = ORDER["items"][0]  # type: ignore[assignment]
    return {
        "orders": [
            {"items": [{**item, "sku": f"SKU-{i}"}], "currency": "usd"} for i in range(count)
        ]
    }


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds used so far by these processes and their children (a worker's pool)."""
    total = 0.0
    for pid in pids:
        try:
            parent = psutil.Process(pid)
            for process in [parent, *parent.children(recursive=True)]:
                times = process.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


class LockWaits(threading.Thread):
    """On PostgreSQL: every 20 ms, how many sessions of the database are running a statement,
    and how many of them wait for a lock (a row lock: the batch's, or an order's)."""

    def __init__(self, database_url: str) -> None:
        super().__init__(daemon=True)
        url = make_url(database_url).set(drivername="postgresql")
        self.dsn = url.render_as_string(hide_password=False)
        self.samples: list[tuple[int, int]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            while not self.stopping.wait(0.02):
                row = connection.execute(
                    "SELECT count(*) FILTER (WHERE state = 'active'),"
                    " count(*) FILTER (WHERE wait_event_type = 'Lock')"
                    " FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchone()
                assert row is not None
                self.samples.append((int(row[0]), int(row[1])))

    def figures(self) -> dict[str, float]:
        self.stopping.set()
        self.join(5)
        active = statistics.fmean(a for a, _ in self.samples) if self.samples else 0.0
        waiting = statistics.fmean(w for _, w in self.samples) if self.samples else 0.0
        return {"pg_sessions_active": active, "pg_sessions_waiting_for_a_lock": waiting}


def measured_import(
    pids: dict[str, int], ports: Ports, user: str, count: int, database_url: str | None
) -> dict[str, float]:
    """One import's orders/s, with the CPU the orders workers and the whole set used (and on
    PostgreSQL, its sessions waiting for locks)."""
    workers, every = [pids["worker-orders"]], list(pids.values())
    on_postgresql = database_url and make_url(database_url).get_backend_name() == "postgresql"
    waits = LockWaits(database_url) if database_url and on_postgresql else None
    if waits is not None:
        waits.start()
    before = (cpu_seconds(workers), cpu_seconds(every), time.perf_counter())
    rate = asyncio.run(import_rate(ports, user, count))
    wall = time.perf_counter() - before[2]
    return {
        "orders_per_s": rate,
        "workers_cpu_ms_per_order": (cpu_seconds(workers) - before[0]) * 1000 / count,
        "all_cpu_ms_per_order": (cpu_seconds(every) - before[1]) * 1000 / count,
        "cores_busy": (cpu_seconds(every) - before[1]) / wall,
        **(waits.figures() if waits is not None else {}),
    }


async def import_rate(ports: Ports, user: str, count: int) -> float:
    """Orders/s of one import of `count` orders: POST to its terminal job_progress."""
    bearer = token(user, "bench-business")
    async with (
        websockets.connect(
            f"ws://127.0.0.1:{ports.edge}/api/v1/insight?token={bearer}", compression=None
        ) as ws,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports.api}", timeout=30) as http,
    ):
        await ws.recv()  # insight_ready
        started = time.perf_counter()
        answer = await http.post(
            "/api/v1/orders/import",
            json=_orders(count),
            headers={"Authorization": f"Bearer {bearer}"},
        )
        answer.raise_for_status()
        ended = await _until(ws, answer.json()["job_id"], _terminal("succeeded"), 600)
    return count / (ended - started)


async def cancel_latencies(ports: Ports, user: str, cancels: int, count: int) -> list[float]:
    """Seconds from POST cancel to the terminal `cancelled` job_progress, once per import of
    `count` orders cancelled after its first progress."""
    bearer = token(user, "bench-business")
    auth = {"Authorization": f"Bearer {bearer}"}
    latencies = []
    async with (
        websockets.connect(
            f"ws://127.0.0.1:{ports.edge}/api/v1/insight?token={bearer}", compression=None
        ) as ws,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports.api}", timeout=30) as http,
    ):
        await ws.recv()
        for _ in range(cancels):
            answer = await http.post("/api/v1/orders/import", json=_orders(count), headers=auth)
            job_id = answer.json()["job_id"]
            await _until(ws, job_id, _progress, 120)
            asked = time.perf_counter()
            (await http.post(f"/api/v1/jobs/{job_id}/cancel", headers=auth)).raise_for_status()
            latencies.append(await _until(ws, job_id, _terminal("cancelled"), 120) - asked)
    return latencies


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cancels", type=int, default=20)
    parser.add_argument("--database-url", help="default: a fresh SQLite file per system")
    args = parser.parse_args()
    runs: dict[int, list[dict[str, float]]] = {}
    cancels: list[list[float]] = []
    for workers in (1, 2):
        pids: dict[str, int] = {}
        with job_system(workers, args.database_url, pids) as ports:
            asyncio.run(import_rate(ports, "bench-warmup", 10))
            runs[workers] = [
                measured_import(pids, ports, f"bench-{workers}-{n}", args.orders, args.database_url)
                for n in range(args.repeats)
            ]
            if workers == 1:
                cancels = [
                    asyncio.run(cancel_latencies(ports, f"bench-c{n}", args.cancels, 200))
                    for n in range(args.repeats)
                ]
        medians = {k: statistics.median(r[k] for r in runs[workers]) for k in runs[workers][0]}
        print(
            json.dumps(
                {
                    "orders_workers": workers,
                    "orders_per_s": [round(r["orders_per_s"], 1) for r in runs[workers]],
                    "median": {k: round(v, 2) for k, v in medians.items()},
                    "load_average_1m": round(psutil.getloadavg()[0], 2),
                }
            )
        )
    one, two = (statistics.median(r["orders_per_s"] for r in runs[w]) for w in (1, 2))
    print(json.dumps({"speed_up_2_vs_1": round(two / one, 2)}))
    p50s = [_percentile(run, 0.5) * 1000 for run in cancels]
    p99s = [_percentile(run, 0.99) * 1000 for run in cancels]
    print(
        json.dumps(
            {
                "cancel_to_cancelled_ms": {
                    "samples_per_run": args.cancels,
                    "p50": [round(v, 1) for v in p50s],
                    "p99": [round(v, 1) for v in p99s],
                    "median_p50": round(statistics.median(p50s), 1),
                    "median_p99": round(statistics.median(p99s), 1),
                }
            }
        )
    )


if __name__ == "__main__":
    main()
