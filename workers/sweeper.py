"""The sweep (domain/sweep.py) runs in beat itself, on beat's own loop, not as a task on a
worker: it must end the jobs of a worker that died even when no other worker is left to run a
task. Beat is one process per deployment (`celery -A workers beat`, started by `insight run`
and by the compose file), so each job is swept once.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.beat import PersistentScheduler

from core.models import utcnow
from domain import sweep

logger = logging.getLogger(__name__)

SWEEP_EVERY_SECONDS = 5.0


def run_sweep(app: Any) -> None:
    """One sweep; the message of a job whose cancel was forced is revoked (its run stopped)."""
    try:
        lost, cancelled = sweep.sweep(utcnow())
    except Exception:  # the database or Redis is down: the next tick tries again
        logger.exception("sweep failed")
        return
    for job in lost:
        logger.warning("job lost", extra={"job_id": job.id, "kind": job.kind})
    for job in cancelled:
        logger.info("job cancelled by the sweep", extra={"job_id": job.id, "kind": job.kind})
        app.control.revoke(job.id, terminate=True)


class SweepingScheduler(PersistentScheduler):  # type: ignore[misc]
    """Celery's persistent beat scheduler, which also sweeps every SWEEP_EVERY_SECONDS."""

    _next_sweep = 0.0

    def tick(self, *args: Any, **kwargs: Any) -> float:
        wait: float = super().tick(*args, **kwargs)
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + SWEEP_EVERY_SECONDS
            run_sweep(self.app)
        return max(min(wait, self._next_sweep - time.monotonic()), 0.1)
