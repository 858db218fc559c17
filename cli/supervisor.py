"""`insight run`: the whole system in one terminal, for development.

Starts a local Redis when none answers at REDIS_URL, then every process (docs/operations.md) with
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from cli.local_redis import LocalRedis, answers, is_local
from core.config import DEV_STRIPE_API_KEY, Settings
from core.migrate import migrate
from domain.registry import QUEUES

COLOURS = ["36", "35", "33", "32", "34", "31", "96", "95"]


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Ports:
    api: int = 8000
    edge: int = 8001
    stripe: int = 12111
    worker_metrics: int = 9101  # and up, one port per queue's worker


def _uvicorn(app: str, port: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
        "--timeout-graceful-shutdown", "5", *extra,
    ]  # fmt: skip


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "workers", *args, "-l", "INFO"]


def plan(settings: Settings, ports: Ports) -> tuple[dict[str, str], list[Service]]:
    """The environment every process shares, and the processes, in start order.

    Without STRIPE_API_KEY the local Stripe-compatible server is started and everything is
    pointed at it, webhooks included.
    """
    env: dict[str, str] = {}
    if "PUBLIC_API_URL" not in os.environ:
        env["PUBLIC_API_URL"] = f"http://127.0.0.1:{ports.api}"  # where the demo page calls
    if "INSIGHT_EVENT_MODULES" not in os.environ:
        env["INSIGHT_EVENT_MODULES"] = "demo.events"  # the demo's own event, in every process
    services = [
        Service("api", _uvicorn("api.main:app", ports.api)),
        Service("edge", [sys.executable, "-m", "cli.main", "edge", "--port", str(ports.edge)]),
        *(
            Service(
                f"worker-{queue}",
                _celery("worker", "-Q", queue, "-c", "1", "-n", f"{queue}@%h", "--without-gossip"),
                {"WORKER_METRICS_PORT": str(ports.worker_metrics + index)},
            )
            for index, queue in enumerate(QUEUES)
        ),
        Service("beat", _celery("beat", "--schedule", "var/celerybeat-schedule")),
    ]
    if settings.stripe_api_key is None:
        env["STRIPE_API_KEY"] = DEV_STRIPE_API_KEY
        env["STRIPE_API_BASE"] = f"http://127.0.0.1:{ports.stripe}"
        env["STRIPE_LOCAL_WEBHOOK_URL"] = f"http://127.0.0.1:{ports.api}/api/v1/webhooks/stripe"
        services.insert(0, Service("stripe", _uvicorn("stripe_local.main:app", ports.stripe)))
    return env, services


def _pump_output(name: str, colour: str, stream: IO[bytes], width: int) -> None:
    """Copy a child's output to ours, each line prefixed with the child's name."""
    prefix = f"{name:<{width}} | "
    if sys.stdout.isatty():
        prefix = f"\033[{colour}m{prefix}\033[0m"
    for raw in iter(stream.readline, b""):
        sys.stdout.write(prefix + raw.decode(errors="replace"))
        sys.stdout.flush()


def run(settings: Settings, ports: Ports, var_dir: Path = Path("var")) -> int:
    """Run everything in the foreground until interrupted; returns an exit status."""
    var_dir.mkdir(exist_ok=True)
    extra_env, services = plan(settings, ports)
    env = {**os.environ, **extra_env}
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
    migrate(settings.database_url)
    print(f"database migrated ({settings.database_url.split('@')[-1]})")
    width = max(len(s.name) for s in services)
    try:
        for index, service in enumerate(services):
            proc = subprocess.Popen(
                service.argv,
                env={**env, **service.env},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            procs.append((service, proc))
            threading.Thread(
                target=_pump_output,
                args=(service.name, COLOURS[index % len(COLOURS)], proc.stdout, width),
                daemon=True,
            ).start()
        print(
            f"Insight is running (Ctrl-C stops):\n"
            f"  demo      http://127.0.0.1:{ports.edge}/  (open two windows as two users)\n"
            f"  job API   http://127.0.0.1:{ports.api}/docs\n"
            f"  edge      ws://127.0.0.1:{ports.edge}/api/v1/insight"
        )
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
