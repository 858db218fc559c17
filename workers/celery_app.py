"""The one Celery app: queues orders, payments and metrics, routed by task name.

celery -A workers worker -Q orders      # one worker per queue in production
celery -A workers beat                  # the periodic metrics push
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init

from core.config import get_settings
from core.db import dispose_after_fork
from core.logging import configure_logging
from workers import reliability

METRICS_EVERY_SECONDS = 60.0


def create_celery() -> Celery:
    # Task modules are imported by the worker at start-up (`include`), not here: the API only
    # sends tasks by name and never needs them.
    app = Celery("insight", include=["workers.tasks"])
    app.conf.update(reliability.celery_settings(get_settings().redis_url))
    app.conf.beat_schedule = {
        "push-business-metrics": {
            "task": "metrics.push_all",
            "schedule": METRICS_EVERY_SECONDS,
            "options": {"expires": METRICS_EVERY_SECONDS},  # a late push is superseded anyway
        }
    }
    return app


app = create_celery()


@worker_init.connect
def _check_settings(**_: Any) -> None:
    configure_logging(get_settings().log_level)
    reliability.check(app.conf)


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    dispose_after_fork()
