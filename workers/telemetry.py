"""Prometheus metrics exported from the workers' side: task run time, failures and retries,
and the depth of every queue, served by each worker's main process on WORKER_METRICS_PORT.

Tasks run in prefork children, so the children record into prometheus_client's multiprocess
files and the main process serves the sum. That mode is chosen when prometheus_client is
first imported, which is why nothing here imports it before `start_exporter` has set
PROMETHEUS_MULTIPROC_DIR (in the main process, before the pool forks).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from domain.registry import QUEUES

_started: dict[str, float] = {}


def start_exporter(app: Any, port: int) -> None:
    """Serve this worker's metrics (all pool processes, plus queue depths) on `port`."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(
        prefix=f"insight-worker-metrics-{os.getpid()}-"
    )
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory

    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(QueueDepthCollector(app))
    start_http_server(port, addr="0.0.0.0", registry=registry)


@lru_cache(maxsize=1)
def _task_metrics() -> tuple[Any, Any, Any]:
    from prometheus_client import Counter, Histogram

    return (
        Histogram(
            "insight_celery_task_runtime_seconds",
            "Time a task ran",
            ["task", "state"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 90),
        ),
        Counter("insight_celery_task_failures", "Tasks that ended in failure", ["task"]),
        Counter("insight_celery_task_retries", "Task retries scheduled", ["task"]),
    )


def enabled() -> bool:
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ


def task_started(task_id: str) -> None:
    if enabled():
        _started[task_id] = time.perf_counter()


def task_finished(task_id: str, task_name: str, state: str | None) -> None:
    started = _started.pop(task_id, None)
    if started is not None:
        runtime, _, _ = _task_metrics()
        runtime.labels(task_name, state or "UNKNOWN").observe(time.perf_counter() - started)


def task_failed(task_name: str) -> None:
    if enabled():
        _task_metrics()[1].labels(task_name).inc()


def task_retried(task_name: str) -> None:
    if enabled():
        _task_metrics()[2].labels(task_name).inc()


class QueueDepthCollector:
    """Messages waiting in each queue, asked of the broker (Redis or RabbitMQ) at scrape time."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        depth = GaugeMetricFamily(
            "insight_celery_queue_depth", "Messages waiting in a queue", labels=["queue"]
        )
        with self.app.connection_for_read() as connection:
            channel = connection.default_channel
            for queue in QUEUES:
                try:
                    waiting = channel.queue_declare(queue=queue, passive=True).message_count
                except Exception:  # a queue nobody declared yet holds nothing
                    waiting = 0
                    channel = connection.channel()
                depth.add_metric([queue], waiting)
        yield depth
