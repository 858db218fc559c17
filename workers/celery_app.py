"""The workers' Celery app: its tasks, its beat schedule, and what every task run logs and
measures. (The API sends by task name through a producer of its own, `api.submission`, with
the same settings: `domain.reliability`.)

celery -A workers worker -Q orders      # one worker per queue in production
celery -A workers beat                  # the periodic metrics push and the sweep of
                                        # lost jobs (workers/sweeper.py)
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import (
    setup_logging,
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
    worker_init,
    worker_process_init,
)

from core import json_logs as log_context
from core.config import get_settings
from core.db import dispose_after_fork
from core.json_logs import configure_logging
from domain import reliability
from realtime.registry import event_registry
from workers import telemetry

logger = logging.getLogger(__name__)

METRICS_EVERY_SECONDS = 60.0


def create_celery() -> Celery:
    # Task modules are imported by the worker at start-up (`include`), not when this module
    # is: the tasks import this app to register with it.
    # The declared events (INSIGHT_EVENT_MODULES), read now: a module that cannot be used stops
    # the worker and beat at start, naming it (an error in a Celery signal would only be logged).
    event_registry()
    app = Celery("insight", include=["workers.tasks"])
    settings = get_settings()
    app.conf.update(reliability.celery_settings(settings.broker_url, settings.result_backend))
    app.conf.beat_schedule = {
        "push-business-metrics": {
            "task": "metrics.push_all",
            "schedule": METRICS_EVERY_SECONDS,
            "options": {"expires": METRICS_EVERY_SECONDS},  # a late push is superseded anyway
        }
    }
    app.conf.beat_scheduler = "workers.sweeper:SweepingScheduler"
    return app


app = create_celery()


@setup_logging.connect
def _json_logs(**_: Any) -> None:
    """Replace Celery's log set-up with the JSON lines every Insight process writes."""
    configure_logging(get_settings().log_level)


@worker_init.connect
def _check_settings_and_export_metrics(**_: Any) -> None:
    reliability.check(app.conf)
    port = get_settings().worker_metrics_port
    if port:
        telemetry.start_exporter(app, port)


@task_prerun.connect
def _bind_log_context(task: Any = None, args: Any = None, **_: Any) -> None:
    """Every line a task logs names the API request (X-Request-ID) and the job it serves."""
    log_context.request_id.set(task.request.get("request_id") if task is not None else None)
    log_context.job_id.set(args[0] if args else None)
    logger.info("task started", extra={"task": getattr(task, "name", None)})
    if task is not None:
        telemetry.task_started(task.request.id)


@task_postrun.connect
def _clear_log_context(task: Any = None, state: str | None = None, **_: Any) -> None:
    logger.info("task finished", extra={"task": getattr(task, "name", None), "state": state})
    if task is not None:
        telemetry.task_finished(task.request.id, task.name, state)
    log_context.request_id.set(None)
    log_context.job_id.set(None)


@task_failure.connect
def _count_failure(sender: Any = None, **_: Any) -> None:
    telemetry.task_failed(getattr(sender, "name", "unknown"))


@task_retry.connect
def _count_retry(sender: Any = None, **_: Any) -> None:
    telemetry.task_retried(getattr(sender, "name", "unknown"))


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    dispose_after_fork()
