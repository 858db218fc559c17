"""What the user's page is told about a job, derived from the job's committed state.

Each function runs only after the fact it announces is committed, and can run again on a
redelivery with the same result, which is what lets a task re-announce a finished job whose
announcement may not have gone out (see `JobView.notified`).
"""

from __future__ import annotations

from typing import Any

from realtime import UIManager
from workers.services.jobs import JobView

DEFAULT_SUCCESS_URL = "/orders?status=success"


def _ui(job: JobView) -> UIManager:
    context = {"jobId": job.id}
    if job.correlation_id:
        context["requestId"] = job.correlation_id
    return UIManager.for_user(job.user_id).with_context(**context)


def progress(job: JobView, percent: int, status: str = "running") -> None:
    """A ui_update the page can draw as a progress bar."""
    _ui(job).update_ui(
        {
            "type": "job_progress",
            "jobId": job.id,
            "kind": job.kind,
            "percent": percent,
            "status": status,
        },
        coalesce_key=f"job:{job.id}",
    )


def outcome(job: JobView, metrics: dict[str, Any] | None = None) -> None:
    """The events that close a finished job, by kind and status."""
    ui = _ui(job)
    result = job.result or {}
    progress(job, 100, job.status)
    if job.kind == "order":
        if job.status == "succeeded":
            ui.show_toast("Order created", f"Order #{result['order_id']} created", "success")
        else:
            ui.show_toast("Order failed", f"The order could not be created: {job.error}", "error")
    elif job.kind == "payment":
        if job.status == "succeeded":
            ui.show_toast("Payment received", f"Order #{result['order_id']} is paid", "success")
            ui.redirect(result.get("success_url") or DEFAULT_SUCCESS_URL)
        else:
            ui.show_toast("Payment failed", job.error or "The payment failed", "error")
            ui.show_modal(
                "payment_failed",
                {
                    "jobId": job.id,
                    "orderId": result.get("order_id"),
                    "reason": job.error,
                    "declineCode": result.get("decline_code"),
                },
            )
    elif job.kind == "metrics":
        if job.status == "succeeded" and metrics is not None and job.business_id:
            push_metrics(job.business_id, metrics, job)
        elif job.status == "failed":
            ui.show_toast("Metrics failed", job.error or "Could not compute metrics", "error")


def push_metrics(business_id: str, metrics: dict[str, Any], job: JobView | None = None) -> None:
    """The dashboard's ui_update, to every member of the business."""
    ui = UIManager.for_business(business_id)
    if job is not None:
        ui = ui.with_context(jobId=job.id)
    ui.update_ui(
        {"type": "metrics_update", "businessId": business_id, "metrics": metrics},
        coalesce_key=f"metrics:{business_id}",
    )
