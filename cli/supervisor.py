"""`insight run`: the whole system in one terminal, for development.

Starts a local Redis when none answers at REDIS_URL, then every process of DESIGN.md with
its output prefixed by its name; Ctrl-C (or SIGTERM) stops all of them, and if any one
exits the rest are stopped too, so a broken process is never hidden behind a working one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cli.local_redis import LocalRedis, answers, is_local
from core.config import Settings

COLOURS = ["36", "35", "33", "32", "34", "31", "96", "95"]


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]


def services(settings: Settings, edge_port: int) -> list[Service]:
    """Every long-running process of the system, in start order."""
    python = sys.executable
    return [
        Service(
            "edge",
            [
                python, "-m", "uvicorn", "realtime.main:app",
                "--host", "127.0.0.1", "--port", str(edge_port),
                "--ws-max-size", str(settings.ws_max_message_bytes),
                "--timeout-graceful-shutdown", "5",
            ],
        ),
    ]  # fmt: skip


def _pump_output(name: str, colour: str, stream: object, width: int) -> None:
    assert hasattr(stream, "readline")
    prefix = f"{name:<{width}} | "
    if sys.stdout.isatty():
        prefix = f"\033[{colour}m{prefix}\033[0m"
    for raw in iter(stream.readline, b""):
        sys.stdout.write(prefix + raw.decode(errors="replace"))
        sys.stdout.flush()


def run(settings: Settings, *, edge_port: int = 8001, var_dir: Path = Path("var")) -> int:
    """Run everything in the foreground until interrupted; returns an exit status."""
    env = dict(os.environ)
    local_redis: LocalRedis | None = None
    if not answers(settings.redis_url):
        if not is_local(settings.redis_url):
            print(f"no Redis answers at {settings.redis_url}", file=sys.stderr)
            return 1
        port = urlsplit(settings.redis_url).port or 6379
        local_redis = LocalRedis(port, var_dir / "redis", persistent=True).start()
        print(f"started a local Redis on port {port} (data in {var_dir / 'redis'})")
    procs: list[tuple[Service, subprocess.Popen[bytes]]] = []
    stopping = threading.Event()

    def stop(*_: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    width = max(len(s.name) for s in services(settings, edge_port))
    try:
        for index, service in enumerate(services(settings, edge_port)):
            proc = subprocess.Popen(
                service.argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            procs.append((service, proc))
            threading.Thread(
                target=_pump_output,
                args=(service.name, COLOURS[index % len(COLOURS)], proc.stdout, width),
                daemon=True,
            ).start()
        print(f"Insight is running: edge ws://127.0.0.1:{edge_port}/api/v1/insight  (Ctrl-C stops)")
        while not stopping.is_set():
            for service, proc in procs:
                if proc.poll() is not None:
                    print(f"{service.name} exited with {proc.returncode}; stopping everything")
                    stopping.set()
            stopping.wait(0.5)
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 10
        for _, proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        if local_redis is not None:
            local_redis.stop()
    return 0
