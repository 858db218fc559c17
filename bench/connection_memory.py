"""Where an idle connection's memory goes on the edge: Python's own accounting (tracemalloc)
of what N idle WebSockets add, by the line that allocated it, per connection.

`make bench` scenario 3 gives the RSS per connection; this says what it is made of (the
performance issue's goal 4). The edge runs as `insight edge` does (`edge.serving.serve`, the
same protocols), in a process of its own with tracemalloc on; a snapshot is taken once a few
warm-up sockets are open, and another once N more are, and the difference is printed.

    .venv/bin/python -m bench.connection_memory --connections 2000
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from types import FrameType

import websockets

from bench.common import server_env, token, wait_ready
from cli.local_redis import LocalRedis, free_port

WARM_UP = 50  # sockets opened before the first snapshot: what the first connections build
SITES = 80  # allocation sites printed
SETTLE_SECONDS = 2.0  # for the edge to finish what the last connects started


def _edge(port: int, connections: int, report: Path, depth: int) -> None:
    """In the edge's process: SIGUSR2 takes the first snapshot, SIGUSR1 writes the report."""
    tracemalloc.start(depth)
    first: list[tracemalloc.Snapshot] = []

    def before(_signal: int, _frame: FrameType | None) -> None:
        first.append(tracemalloc.take_snapshot())

    def after(_signal: int, _frame: FrameType | None) -> None:
        stats = tracemalloc.take_snapshot().compare_to(
            first[0], "lineno" if depth == 1 else "traceback"
        )
        lines = [f"total {sum(s.size_diff for s in stats) / connections:.0f} B per connection"]
        by_file: dict[str, int] = {}
        for stat in stats:
            name = stat.traceback[0].filename
            by_file[name] = by_file.get(name, 0) + stat.size_diff
        lines += ["by file:"] + [
            f"{size / connections:8.0f} B  {name}"
            for name, size in sorted(by_file.items(), key=lambda item: -item[1])[:SITES]
        ]
        lines += ["by line:"]
        lines += [
            f"{s.size_diff / connections:8.0f} B {s.count_diff / connections:6.2f} objects  "
            f"{s.traceback[0].filename}:{s.traceback[0].lineno}{_callers(s.traceback)}"
            for s in stats[:SITES]
        ]
        report.write_text("\n".join(lines) + "\n")

    signal.signal(signal.SIGUSR2, before)
    signal.signal(signal.SIGUSR1, after)
    from core.config import Settings
    from edge.serving import serve

    serve(Settings(), "127.0.0.1", port)


def _callers(traceback: tracemalloc.Traceback) -> str:
    """` <- file:line` for each caller of an allocating line (with --depth over 1)."""
    return "".join(f" <- {Path(f.filename).name}:{f.lineno}" for f in list(traceback)[1:])


async def _open(port: int, users: list[str]) -> list[websockets.ClientConnection]:
    gate = asyncio.Semaphore(200)

    async def one(user: str) -> websockets.ClientConnection:
        async with gate:
            url = f"ws://127.0.0.1:{port}/api/v1/insight?token={token(user)}"
            socket = await websockets.connect(url, compression=None)
            await socket.recv()  # insight_ready
            return socket

    return list(await asyncio.gather(*(one(user) for user in users)))


async def _report(edge: subprocess.Popen[bytes], report: Path) -> str:
    """Ask the edge for its report, and wait for it (the sockets keep answering pings)."""
    edge.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 300
    while not await asyncio.to_thread(report.exists):
        if time.monotonic() > deadline or edge.poll() is not None:
            raise RuntimeError("the edge wrote no report")
        await asyncio.sleep(0.2)
    return await asyncio.to_thread(report.read_text)


def measure(connections: int, depth: int = 1) -> str:
    """The report: bytes and objects per connection, by allocating line."""
    with tempfile.TemporaryDirectory(prefix="connection-memory-") as directory:
        report = Path(directory) / "report.txt"
        server = LocalRedis(free_port(), Path(directory) / "redis").start()
        port = free_port()
        command = [sys.executable, "-m", "bench.connection_memory", "--edge", str(port)]
        command += ["--connections", str(connections), "--report", str(report)]
        command += ["--depth", str(depth)]
        edge = subprocess.Popen(command, env=server_env(server.url), stderr=subprocess.DEVNULL)
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz")
            return asyncio.run(_sockets_and_report(edge, port, connections, report))
        finally:
            edge.kill()
            edge.wait(10)
            server.stop()


async def _sockets_and_report(
    edge: subprocess.Popen[bytes], port: int, connections: int, report: Path
) -> str:
    warm = await _open(port, [f"warm-{n}" for n in range(WARM_UP)])
    await asyncio.sleep(SETTLE_SECONDS)
    edge.send_signal(signal.SIGUSR2)
    await asyncio.sleep(SETTLE_SECONDS)
    idle = await _open(port, [f"idle-{n}" for n in range(connections)])
    await asyncio.sleep(SETTLE_SECONDS)
    text = await _report(edge, report)
    for socket in [*warm, *idle]:
        await socket.close()
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=2_000)
    parser.add_argument(
        "--depth", type=int, default=1, help="frames of each allocation's traceback (its callers)"
    )
    parser.add_argument("--edge", type=int, help=argparse.SUPPRESS)  # the edge's own process
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.edge:
        _edge(args.edge, args.connections, args.report, args.depth)
        return 0
    print(measure(args.connections, args.depth), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
