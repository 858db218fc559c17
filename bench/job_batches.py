"""An import of 1,000 orders with 1 and with 2 order workers (orders/s and the speed-up), and
the time from POST /jobs/{id}/cancel to the job's terminal `cancelled` job_progress.

Runs the real process set of `make run` (bench/order_to_toast.py: job_system) on a private
Redis and a fresh SQLite database; prints one JSON line per figure, the speed-up as the ratio
of two runs of the same invocation. Figures and how to read them: docs/benchmarks.md.

    .venv/bin/python -m bench.job_batches --orders 1000 --cancels 20 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx
import websockets

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cancels", type=int, default=20)
    args = parser.parse_args()
    rates: dict[int, list[float]] = {}
    for workers in (1, 2):
        with job_system(orders_workers=workers) as ports:
            asyncio.run(import_rate(ports, "bench-warmup", 10))
            rates[workers] = [
                asyncio.run(import_rate(ports, f"bench-{workers}-{n}", args.orders))
                for n in range(args.repeats)
            ]
            if workers == 1:
                latencies = sorted(
                    asyncio.run(cancel_latencies(ports, "bench-c", args.cancels, 200))
                )
        print(
            json.dumps(
                {
                    "orders_workers": workers,
                    "orders_per_s": [round(r, 1) for r in rates[workers]],
                    "median": round(statistics.median(rates[workers]), 1),
                }
            )
        )
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    print(json.dumps({"speed_up_2_vs_1": round(two / one, 2)}))
    print(
        json.dumps(
            {
                "cancel_to_cancelled_ms": {
                    "samples": len(latencies),
                    "p50": round(statistics.median(latencies) * 1000, 1),
                    "p99": round(
                        latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000, 1
                    ),
                }
            }
        )
    )


if __name__ == "__main__":
    main()
