"""Every Celery reliability setting, chosen on purpose and explained in one place.

The goal: a job runs to completion exactly once in effect, whatever dies along the way.
Tasks are idempotent (they find their earlier work by job id), so the broker is allowed to
deliver a message again; these settings make sure it does so whenever a run did not finish,
and never faster than a run may legitimately take.

Shared by the workers and the API's producer, so that both speak to the broker alike. The time
limits are each job kind's (registry.py) and the cap on deliveries is the job lifecycle's
(jobs.py); `check` holds them to these settings.
"""

from __future__ import annotations

from typing import Any

from domain.jobs import MAX_DELIVERIES
from domain.registry import JOB_TYPES, QUEUES

# Retries of transient errors: exponential backoff with full jitter, capped.
RETRY_BACKOFF_MAX = 120
MAX_RETRIES = 6

# With the Redis broker an unacknowledged message returns to the queue only after this long.
# It must exceed the longest a delivery may legitimately be held unacknowledged: a run up to
# its hard limit, or a retry waiting out its countdown; otherwise a second worker would start
# a job the first is still running.
VISIBILITY_TIMEOUT = 3600


def celery_settings(broker_url: str, result_backend: str | None = None) -> dict[str, Any]:
    """The Celery configuration of every worker and of the API's producer."""
    return {
        "broker_url": broker_url,
        "broker_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT},
        # Job state lives in the database (GET /jobs/{id}); Celery results are not kept, the
        # backend is configured only for tools such as Flower.
        "task_ignore_result": True,
        "result_backend": result_backend,
        # Acknowledge after the task ran, so a crash mid-run means redelivery, not loss ...
        "task_acks_late": True,
        # ... including when the pool process is killed (OOM, kill -9, hard time limit) ...
        "task_reject_on_worker_lost": True,
        # ... and reserve one message at a time, so a busy worker does not sit on others' work.
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": JOB_TYPES["order"].queue,
        "task_routes": {f"{queue}.*": {"queue": queue} for queue in QUEUES},
        # Broker connection loss: keep retrying (also at start-up), and cancel running
        # late-ack tasks, whose messages the broker will redeliver anyway.
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_track_started": False,
        "worker_hijack_root_logger": False,
        # Task events (received, started, succeeded...) are for monitors such as Flower,
        # which turns them on at run time (`enable_events`); sent by default they took an
        # eighth of an orders worker's CPU.
        "worker_send_task_events": False,
        "task_send_sent_event": False,
    }


class InconsistentSettings(RuntimeError):
    """The Celery configuration would lose or duplicate work."""


def check(conf: Any) -> None:
    """Refuse to start with settings that break the guarantees above."""
    problems = []
    if not conf.task_acks_late:
        problems.append("task_acks_late must be on: a crash would lose the running job")
    if not conf.task_reject_on_worker_lost:
        problems.append("task_reject_on_worker_lost must be on: a killed worker loses its job")
    if conf.worker_prefetch_multiplier != 1:
        problems.append("worker_prefetch_multiplier must be 1 with late acknowledgement")
    if list(conf.accept_content) != ["json"] or conf.task_serializer != "json":
        problems.append("only JSON may be accepted and produced")
    visibility = (conf.broker_transport_options or {}).get("visibility_timeout", 3600)
    longest = max(max(job.limits.hard for job in JOB_TYPES.values()), RETRY_BACKOFF_MAX)
    if visibility <= longest:
        problems.append(
            f"visibility_timeout ({visibility} s) must exceed the longest hard time limit or "
            f"retry countdown ({longest} s), or a running job is handed to a second worker"
        )
    for job in JOB_TYPES.values():
        if not 0 < job.limits.soft < job.limits.hard:
            problems.append(f"{job.queue}: the soft time limit must be below the hard one")
    if MAX_DELIVERIES <= MAX_RETRIES:
        problems.append("MAX_DELIVERIES must leave room for every retry")
    if problems:
        raise InconsistentSettings("; ".join(problems))
