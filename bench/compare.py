"""Targeted push, side by side: Insight, python-socketio, encode/broadcaster and the floor
(raw Redis PUBLISH to SUBSCRIBE, no WebSocket), with the same load client and producer.

For each target: a private Redis, the server under uvicorn (one process), a load client
process holding U WebSocket connections (it speaks Engine.IO v4 itself for Socket.IO), and a
producer process publishing to random users at R events/s, each event stamped with
`time.time_ns()` just before the publish call. Reported per target: publish-to-receive
latency, lost / misrouted / duplicated events, server CPU microseconds per delivered event,
server RSS, and Redis CPU; plus every figure as a ratio to Insight's.

    .venv/bin/python -m bench.compare --users 1000 --rates 500 2000 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from bench.common import start_uvicorn, token
from cli.local_redis import LocalRedis, free_port

TARGETS = ("insight", "socketio", "broadcaster", "floor")
APPS = {
    "insight": "realtime.main:app",
    "socketio": "bench.peers.socketio_server:app",
    "broadcaster": "bench.peers.broadcaster_server:app",
}


def start_server(target: str, redis_url: str, port: int) -> subprocess.Popen[bytes] | None:
    return None if target == "floor" else start_uvicorn(APPS[target], port, redis_url)


# -- the load client (its own process) ---------------------------------------------------


def _url(target: str, port: int, user: str) -> str:
    if target == "insight":
        return f"ws://127.0.0.1:{port}/api/v1/insight?token={token(user)}"
    if target == "socketio":
        return f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket&user={user}"
    return f"ws://127.0.0.1:{port}/ws?user={user}"


def _payload(target: str, raw: str) -> dict[str, Any] | None:
    """The producer's payload in a received frame, or None for protocol chatter."""
    if target == "insight":
        frame = json.loads(raw)
        return frame.get("data") if frame.get("type") == "ui_update" else None
    if target == "socketio":
        return json.loads(raw[2:])[1] if raw.startswith("42") else None
    return json.loads(raw) if raw.startswith("{") else None


async def _listen(target: str, port: int, redis_url: str, users: list[str], ready: Any,
                  stop: Any, out: str) -> None:  # fmt: skip
    import websockets

    received: dict[str, list[tuple[int, int, str]]] = {u: [] for u in users}
    connected = asyncio.Event()
    count = 0

    def record(user: str, payload: dict[str, Any], now: int) -> None:
        received[user].append((payload["n"], now - payload["t"], payload["to"]))

    async def floor_client() -> None:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(redis_url)
        pubsub = client.pubsub()
        await pubsub.subscribe(*(f"user:{u}" for u in users))
        connected.set()
        while not stop.is_set():
            message = await pubsub.get_message(timeout=0.1)
            if message and message["type"] == "message":
                now = time.time_ns()
                user = message["channel"].decode()[5:]
                record(user, json.loads(message["data"]), now)

    async def one(user: str, gate: asyncio.Semaphore) -> None:
        nonlocal count
        async with gate:
            ws = await websockets.connect(_url(target, port, user), compression=None,
                                          max_size=None, open_timeout=60)  # fmt: skip
            if target == "insight":
                while json.loads(await ws.recv())["type"] != "insight_ready":
                    pass
            elif target == "socketio":
                await ws.recv()  # 0{...} open
                await ws.send("40")
                await ws.recv()  # 40{...} connected
            else:
                await ws.recv()  # "ready": subscribed
        count += 1
        if count == len(users):
            connected.set()
        async for raw in ws:
            now = time.time_ns()
            if target == "socketio" and raw == "2":
                await ws.send("3")
                continue
            payload = _payload(target, raw)  # type: ignore[arg-type]
            if payload is not None:
                record(user, payload, now)

    if target == "floor":
        task = asyncio.create_task(floor_client())
        tasks = [task]
    else:
        gate = asyncio.Semaphore(200)
        tasks = [asyncio.create_task(one(u, gate)) for u in users]
    await asyncio.wait_for(connected.wait(), 300)
    ready.set()
    await asyncio.to_thread(stop.wait)
    for task in tasks:
        task.cancel()
    await asyncio.to_thread(Path(out).write_text, json.dumps(received))


def load_client(target: str, port: int, redis_url: str, users: list[str], ready: Any,
                stop: Any, out: str) -> None:  # fmt: skip
    asyncio.run(_listen(target, port, redis_url, users, ready, stop, out))


# -- the producer (its own process) ------------------------------------------------------


def _publisher(target: str, redis_url: str) -> Callable[[str, dict[str, Any]], object]:
    if target == "insight":
        os.environ.update(REDIS_URL=redis_url, ENVIRONMENT="development")
        from realtime import Recipient, UIManager

        return lambda user, data: UIManager(Recipient.user(user)).update_ui(data)
    if target == "socketio":
        import socketio

        manager = socketio.RedisManager(redis_url, write_only=True)
        return lambda user, data: manager.emit("ui", data, room=f"user:{user}")
    import redis

    client = redis.Redis.from_url(redis_url)
    return lambda user, data: client.publish(f"user:{user}", json.dumps(data))


def produce(target: str, redis_url: str, users: list[str], rate: float, seconds: float,
            out: str) -> None:  # fmt: skip
    publish = _publisher(target, redis_url)
    rng = random.Random(7)
    sent: dict[str, list[int]] = {}
    started = time.perf_counter()
    cpu = time.process_time()
    n = 0
    while (elapsed := time.perf_counter() - started) < seconds:
        due = int(elapsed * rate) + 1
        while n < due:
            user = rng.choice(users)
            publish(user, {"t": time.time_ns(), "to": user, "n": n})
            sent.setdefault(user, []).append(n)
            n += 1
        time.sleep(0.0005)
    Path(out).write_text(
        json.dumps(
            {"sent": sent, "cpu_us_per_event": (time.process_time() - cpu) / max(n, 1) * 1e6}
        )
    )


# -- one measurement ---------------------------------------------------------------------


def measure(target: str, users_count: int, rate: float, seconds: float) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"insight-bench-{target}-"))
    redis_server = LocalRedis(free_port(), workdir / "redis").start()
    port = free_port()
    server = start_server(target, redis_server.url, port)
    users = [f"u{i}" for i in range(users_count)]
    spawn = multiprocessing.get_context("spawn")
    ready, stop = spawn.Event(), spawn.Event()
    received_file, sent_file = workdir / "received.json", workdir / "sent.json"
    client = spawn.Process(target=load_client, args=(target, port, redis_server.url, users,
                                                     ready, stop, str(received_file)))  # fmt: skip
    server_proc = psutil.Process(server.pid) if server else None
    rss_before = server_proc.memory_info().rss if server_proc else 0  # no connections yet
    connect_started = time.perf_counter()
    client.start()
    try:
        if not ready.wait(180):
            raise RuntimeError(f"{target}: {users_count} clients did not all connect in 180 s")
        connect_seconds = time.perf_counter() - connect_started
        redis_proc = psutil.Process(redis_server.process.pid)  # type: ignore[union-attr]
        rss_connected = server_proc.memory_info().rss if server_proc else 0
        cpu_before = sum(server_proc.cpu_times()[:2]) if server_proc else 0.0
        redis_before = sum(redis_proc.cpu_times()[:2])
        producer = spawn.Process(target=produce, args=(target, redis_server.url, users, rate,
                                                       seconds, str(sent_file)))  # fmt: skip
        producer.start()
        producer.join()
        time.sleep(2)  # let in-flight events land before counting
        cpu = (sum(server_proc.cpu_times()[:2]) - cpu_before) if server_proc else None
        redis_cpu = sum(redis_proc.cpu_times()[:2]) - redis_before
        rss = server_proc.memory_info().rss if server_proc else None
        stop.set()
        client.join(60)
    finally:
        stop.set()
        for child in (client,):
            child.join(10)
            if child.is_alive():
                child.kill()
        if server is not None:
            server.terminate()  # broadcaster's server may not stop while subscribers wait
            try:
                server.wait(5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(5)
        redis_server.stop()
    produced = json.loads(sent_file.read_text())
    sent, received = produced["sent"], json.loads(received_file.read_text())
    latencies = sorted(lat for frames in received.values() for _, lat, _ in frames)
    delivered = len(latencies)
    total = sum(len(v) for v in sent.values())
    lost = sum(len(set(ns) - {n for n, _, _ in received.get(u, [])}) for u, ns in sent.items())
    duplicated = sum(len(f) - len({n for n, _, _ in f}) for f in received.values())
    misrouted = sum(1 for u, f in received.items() for _, _, to in f if to != u)

    def ms(q: float) -> float | None:
        if not latencies:
            return None
        return round(float(latencies[min(delivered - 1, int(q * delivered))]) / 1e6, 3)

    cpu_per_event = round(cpu / delivered * 1e6, 1) if cpu is not None and delivered else None
    rss_per_conn = (
        round((rss_connected - rss_before) / 1024 / users_count, 2) if server_proc else None
    )

    return {
        "target": target, "users": users_count, "rate": rate, "seconds": seconds,
        "published": total, "delivered": delivered, "lost": lost, "misrouted": misrouted,
        "duplicated": duplicated, "p50_ms": ms(0.5), "p90_ms": ms(0.9), "p99_ms": ms(0.99),
        "max_ms": round(latencies[-1] / 1e6, 3) if latencies else None,
        "server_cpu_us_per_event": cpu_per_event,
        "server_rss_mib": round(rss / 2**20, 1) if rss else None,
        "server_rss_kib_per_connection": rss_per_conn,
        "connect_seconds": round(connect_seconds, 2),
        "redis_cpu_us_per_event": round(redis_cpu / max(total, 1) * 1e6, 1),
        "producer_cpu_us_per_event": round(produced["cpu_us_per_event"], 1),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--rates", type=float, nargs="+", default=[500, 2000])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    results = []
    for rate in args.rates:
        for target in args.targets:
            result = measure(target, args.users, rate, args.seconds)
            print(json.dumps(result), flush=True)
            results.append(result)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "targeted_push.json").write_text(json.dumps(results, indent=2))
    (out / "targeted_push.md").write_text(markdown(results))
    print(markdown(results))


def markdown(results: list[dict[str, Any]]) -> str:
    columns = ["p50_ms", "p99_ms", "max_ms", "lost", "misrouted", "duplicated",
               "server_cpu_us_per_event", "server_rss_kib_per_connection", "connect_seconds",
               "redis_cpu_us_per_event", "producer_cpu_us_per_event"]  # fmt: skip
    lines = ["| rate | target | " + " | ".join(columns) + " |", "|---" * (len(columns) + 2) + "|"]
    for result in results:
        base = next(
            (r for r in results if r["rate"] == result["rate"] and r["target"] == "insight"), None
        )
        cells = []
        for column in columns:
            value = result[column]
            ratio = ""
            if base and base is not result and isinstance(value, int | float) and base[column]:
                ratio = f" ({value / base[column]:.2f}x)"
            cells.append(f"{value}{ratio}")
        lines.append(f"| {result['rate']:.0f} | {result['target']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nRatios are to Insight's figure at the same rate.\n"


if __name__ == "__main__":
    main()
