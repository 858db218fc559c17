"""What the user's page is told about a job, derived from the job's committed state.

Each function publishes only after the fact it announces is committed: given
`after_commit=session`, the session that writes the fact, its events wait for that session's
COMMIT and are dropped if it rolls back (`UIManager.after_commit`); without it, the fact must
already be committed. Each can run again on a redelivery with the same result, which is what
lets a task re-announce a finished job whose announcement may not have gone out (see
`JobView.notified`), including after a commit whose publish failed (Redis down: the error is
raised out of the commit, and the task's retry announces again).

Every event about a job is published with an idempotency key made of the job's id and the
event's part in it (`job:<id>:toast`): the job id is the same on every retry and redelivery
of its task, so an announcement that did go out before a crash is not shown twice when the
task runs again, while one that did not go out is published then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from realtime import UIManager
from workers.services.jobs import JobView

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from realtime.after_commit import AfterCommitUIManager

    Announcer = UIManager | AfterCommitUIManager

DEFAULT_SUCCESS_URL = "/orders?status=success"


def _ui(job: JobView, after_commit: Session | None = None) -> Announcer:
    context = {"jobId": job.id}
    if job.correlation_id:
        context["requestId"] = job.correlation_id
    ui = UIManager.for_user(job.user_id).with_context(**context)
    return ui if after_commit is None else ui.after_commit(after_commit)


def _key(job: JobView, part: str) -> str:
    """The idempotency key of the event that plays `part` in `job`."""
    return f"job:{job.id}:{part}"


def progress(
    job: JobView, percent: int, status: str = "running", *, after_commit: Session | None = None
) -> None:
    """A ui_update the page can draw as a progress bar."""
    _ui(job, after_commit).update_ui(
        {
            "type": "job_progress",
            "jobId": job.id,
            "kind": job.kind,
            "percent": percent,
            "status": status,
        },
        coalesce_key=f"job:{job.id}",
        idempotency_key=_key(job, f"progress:{percent}:{status}"),
    )


def outcome(
    job: JobView, metrics: dict[str, Any] | None = None, *, after_commit: Session | None = None
) -> None:
    """The events that close a finished job, by kind and status."""
    ui = _ui(job, after_commit)
    result = job.result or {}
    progress(job, 100, job.status, after_commit=after_commit)
    if job.kind == "order":
        if job.status == "succeeded":
            ui.show_toast(
                "Order created", f"Order #{result['order_id']} created", "success",
                idempotency_key=_key(job, "toast"),
            )  # fmt: skip
        else:
            ui.show_toast(
                "Order failed", f"The order could not be created: {job.error}", "error",
                idempotency_key=_key(job, "toast"),
            )  # fmt: skip
    elif job.kind == "payment":
        if job.status == "succeeded":
            ui.show_toast(
                "Payment received", f"Order #{result['order_id']} is paid", "success",
                idempotency_key=_key(job, "toast"),
            )  # fmt: skip
            ui.redirect(
                result.get("success_url") or DEFAULT_SUCCESS_URL,
                idempotency_key=_key(job, "redirect"),
            )
        else:
            ui.show_toast(
                "Payment failed", job.error or "The payment failed", "error",
                idempotency_key=_key(job, "toast"),
            )  # fmt: skip
            ui.show_modal(
                "payment_failed",
                {
                    "jobId": job.id,
                    "orderId": result.get("order_id"),
                    "reason": job.error,
                    "declineCode": result.get("decline_code"),
                },
                idempotency_key=_key(job, "modal"),
            )
    elif job.kind == "metrics":
        if job.status == "succeeded" and metrics is not None and job.business_id:
            push_metrics(job.business_id, metrics, job, after_commit=after_commit)
        elif job.status == "failed":
            ui.show_toast(
                "Metrics failed", job.error or "Could not compute metrics", "error",
                idempotency_key=_key(job, "toast"),
            )  # fmt: skip


def push_metrics(
    business_id: str,
    metrics: dict[str, Any],
    job: JobView | None = None,
    *,
    after_commit: Session | None = None,
) -> None:
    """The dashboard's ui_update, to every member of the business."""
    ui = UIManager.for_business(business_id)
    if job is not None:
        ui = ui.with_context(jobId=job.id)
    target: Announcer = ui if after_commit is None else ui.after_commit(after_commit)
    target.update_ui(
        {"type": "metrics_update", "businessId": business_id, "metrics": metrics},
        coalesce_key=f"metrics:{business_id}",
        idempotency_key=_key(job, "metrics") if job is not None else None,
    )
