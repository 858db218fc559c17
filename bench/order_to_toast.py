"""Time from POST /api/v1/orders to the "Order created" toast at the user's WebSocket.

Runs the real process set of `make run` (job API, edge, one Celery worker per queue, beat,
the local Stripe server) against a private Redis and a fresh SQLite database, submits orders
at a steady rate from one client, and prints p50/p90/p99/max and the sustained jobs/s.

    .venv/bin/python -m bench.order_to_toast --rates 20 50 --orders 400
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import websockets

from bench.common import SECRET, server_env, token, wait_ready
from cli.local_redis import LocalRedis, free_port
from cli.supervisor import Ports, plan
from core.config import Settings
from core.migrate import migrate

ORDER = {
    "items": [{"sku": "COFFEE-1", "name": "Coffee", "quantity": 2, "unit_amount": 450}],
    "currency": "usd",
}


async def drive(ports: Ports, token: str, rate: float, count: int) -> tuple[list[float], float]:
    """Submit `count` orders at `rate`/s; returns each one's POST-to-toast time and the jobs/s."""
    sent: dict[str, float] = {}
    toasted: dict[str, float] = {}  # a toast may beat its own POST's response under load
    everything_arrived = asyncio.Event()
    async with (
        websockets.connect(
            f"ws://127.0.0.1:{ports.edge}/api/v1/insight?token={token}", compression=None
        ) as ws,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports.api}", timeout=30) as http,
    ):
        await ws.recv()  # insight_ready

        async def receive() -> None:
            async for raw in ws:
                arrived = time.perf_counter()
                frame = json.loads(raw)
                if frame.get("type") == "ui_toast" and "jobId" in frame:
                    toasted[frame["jobId"]] = arrived
                    if len(toasted) >= count and set(sent) <= set(toasted):
                        everything_arrived.set()

        async def submit() -> None:
            started = time.perf_counter()
            response = await http.post(
                "/api/v1/orders", json=ORDER, headers={"Authorization": f"Bearer {token}"}
            )
            response.raise_for_status()
            sent[response.json()["job_id"]] = started

        receiver = asyncio.create_task(receive())
        begin = time.perf_counter()
        submissions = []
        for n in range(count):
            await asyncio.sleep(max(0.0, begin + n / rate - time.perf_counter()))
            submissions.append(asyncio.create_task(submit()))
        await asyncio.gather(*submissions)
        if not set(sent) <= set(toasted):
            await asyncio.wait_for(everything_arrived.wait(), 120)
        elapsed = max(toasted.values()) - begin
        receiver.cancel()
    return [toasted[job] - started for job, started in sent.items()], count / elapsed


@contextmanager
def job_system(
    orders_workers: int = 1,
    database_url: str | None = None,
    pids: dict[str, int] | None = None,
) -> Iterator[Ports]:
    """The process set of `make run` on a private Redis and a fresh SQLite database (or
    `database_url`, migrated here), with `orders_workers` pool processes on the orders queue.
    `pids`, if given, is filled with each service's process id (and Redis's), by name."""
    workdir = Path(tempfile.mkdtemp(prefix="insight-bench-jobs-"))
    redis_server = LocalRedis(free_port(), workdir / "redis").start()
    database_url = database_url or f"sqlite:///{workdir / 'bench.db'}"
    migrate(database_url)
    env = {**server_env(redis_server.url), "DATABASE_URL": database_url}
    env.pop("STRIPE_API_KEY", None)
    settings = Settings(redis_url=redis_server.url, jwt_secret=SECRET)
    ports = Ports(api=free_port(), edge=free_port(), stripe=free_port())
    extra, services = plan(settings, ports)
    for service in services:
        if service.name == "worker-orders":
            service.argv[service.argv.index("-c") + 1] = str(orders_workers)
    processes = [
        subprocess.Popen(
            s.argv, env={**env, **extra}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for s in services
    ]
    if pids is not None:
        assert redis_server.process is not None
        pids.update({s.name: p.pid for s, p in zip(services, processes, strict=True)})
        pids["redis"] = redis_server.process.pid
    try:
        wait_ready(f"http://127.0.0.1:{ports.api}/readyz")
        wait_ready(f"http://127.0.0.1:{ports.edge}/readyz")
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        redis_server.stop()


def measure(ports: Ports, rates: list[float], orders: int) -> list[dict[str, float]]:
    """Each rate's POST-to-toast percentiles and the jobs/s sustained, after a warm-up."""
    user_token = token("bench-user", "bench-business")
    asyncio.run(drive(ports, user_token, 5, 5))  # warm-up: returns once the workers answer
    rows = []
    for rate in rates:
        latencies, throughput = asyncio.run(drive(ports, user_token, rate, orders))
        latencies.sort()

        def ms(q: float, values: list[float] = latencies) -> float:
            return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 2)

        rows.append(
            {
                "rate": rate,
                "orders": orders,
                "jobs_per_s": round(throughput, 1),
                "p50_ms": ms(0.5),
                "p90_ms": ms(0.9),
                "p99_ms": ms(0.99),
                "max_ms": round(latencies[-1] * 1000, 2),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", type=float, nargs="+", default=[20, 50], help="orders/s")
    parser.add_argument("--orders", type=int, default=300)
    args = parser.parse_args()
    with job_system() as ports:
        for row in measure(ports, args.rates, args.orders):
            print(json.dumps(row))


if __name__ == "__main__":
    main()
