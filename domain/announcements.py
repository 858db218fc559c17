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

from datetime import datetime
from typing import TYPE_CHECKING, Any

from domain.jobs import FINISHED, JobStatus, JobView
from domain.payments import DEFAULT_SUCCESS_URL
from domain.webhooks import PaymentChange
from realtime import AsyncUIManager, UIManager
from realtime.options import MAX_VERSION
from realtime.payloads import JobProgress, MetricsUpdate, OrderUpdate, PaymentUpdate

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from realtime.after_commit import AfterCommitUIManager
    from realtime.events import ToastVariant
    from realtime.payloads import OrderStatus

    Target = UIManager | AfterCommitUIManager


def _ui(job: JobView, after_commit: Session | None = None, *, to_its_tab: bool = False) -> Target:
    """Where the job's events go: every tab of its user; with `to_its_tab`, the tab that
    submitted it while that tab is connected (its redirect and its modal)."""
    context = {"jobId": job.id}
    if job.correlation_id:
        context["requestId"] = job.correlation_id
    client = job.client if to_its_tab else None
    ui = UIManager.for_user(job.user_id, client=client).with_context(**context)
    return ui if after_commit is None else ui.after_commit(after_commit)


def _key(job: JobView, part: str) -> str:
    """The idempotency key of the event that plays `part` in `job`."""
    return f"job:{job.id}:{part}"


def _version(job: JobView, percent: int, status: JobStatus) -> int:
    """Where a progress stands in the job's story, as its committed state says: a later
    attempt after an earlier one, a higher percentage after a lower one (a batch's counts are
    taken under its row lock, so in commit order), the end after everything. The log drops a
    progress published after one of a higher version (`PublishOptions.version`): processes
    publish after their commits in any order, and a count's late progress must not follow
    the job's end. A finished job's is the highest there is: its last word."""
    return MAX_VERSION if status in FINISHED else job.attempt * 1000 + percent


def progress(
    job: JobView,
    percent: int,
    status: JobStatus = "running",
    *,
    done: int | None = None,
    total: int | None = None,
    eta_seconds: int | None = None,
    after_commit: Session | None = None,
) -> None:
    """The job's `job_progress` ui_update, which the page draws as a progress bar: the one
    place every kind reports itself, while it runs and once more when it ends."""
    counted = done is not None and total is not None
    optional = {
        "done": done if counted else None,
        "total": total if counted else None,
        "etaSeconds": eta_seconds,
        "attempt": job.attempt if job.attempt > 1 else None,
    }
    _ui(job, after_commit).update_ui(
        JobProgress(
            jobId=job.id,
            kind=job.kind,
            percent=percent,
            status=status,
            **{key: value for key, value in optional.items() if value is not None},
        ),
        coalesce_key=f"job:{job.id}",
        idempotency_key=_key(job, f"progress:{percent}:{status}"),
        version=_version(job, percent, status),
    )


def _toast(ui: Target, job: JobView, title: str, description: str, variant: ToastVariant) -> None:
    """A job's one toast, whichever way it ended."""
    ui.show_toast(title, description, variant, idempotency_key=_key(job, "toast"))


def _closing(job: JobView, after_commit: Session | None, total: int | None = None) -> Target:
    """A finished job first fills its progress bar (a batch's to `total` of `total`: every
    order has ended); its other events go to the returned ui."""
    progress(job, 100, job.status, done=total, total=total, after_commit=after_commit)
    return _ui(job, after_commit)


def order_changed(ui: Target, job: JobView, order_id: str, status: OrderStatus) -> None:
    """The order's row on the page: created, or paid."""
    ui.update_ui(
        OrderUpdate(orderId=order_id, status=status),
        coalesce_key=f"order:{order_id}",
        idempotency_key=_key(job, f"order:{status}"),
    )


def _cancelled(ui: Target, job: JobView, what: str) -> None:
    """The toast of a job that stopped because its owner asked it to."""
    _toast(ui, job, f"{what} cancelled", f"The {what.lower()} was cancelled", "info")


def order_outcome(job: JobView, *, after_commit: Session | None = None) -> None:
    """An order job's end: a toast naming the new order, or saying why there is none."""
    ui = _closing(job, after_commit)
    result = job.result or {}
    if job.status == "cancelled":
        _cancelled(ui, job, "Order")
    elif job.status == "succeeded":
        order_changed(ui, job, str(result["order_id"]), "created")
        _toast(ui, job, "Order created", f"Order #{result['order_id']} created", "success")
    else:
        _toast(ui, job, "Order failed", f"The order could not be created: {job.error}", "error")


def payment_outcome(job: JobView, *, after_commit: Session | None = None) -> None:
    """A payment job's end: a toast and the redirect to the success page, or a toast and the
    modal that explains the decline."""
    ui = _closing(job, after_commit)
    result = job.result or {}
    if job.status == "cancelled":
        _cancelled(ui, job, "Payment")
    elif job.status == "succeeded":
        order_changed(ui, job, str(result["order_id"]), "paid")
        _toast(ui, job, "Payment received", f"Order #{result['order_id']} is paid", "success")
        _ui(job, after_commit, to_its_tab=True).redirect(
            result.get("success_url") or DEFAULT_SUCCESS_URL,
            idempotency_key=_key(job, "redirect"),
        )
    else:
        _toast(ui, job, "Payment failed", job.error or "The payment failed", "error")
        _ui(job, after_commit, to_its_tab=True).show_modal(
            "payment_failed",
            {
                "jobId": job.id,
                "orderId": result.get("order_id"),
                "reason": job.error,
                "declineCode": result.get("decline_code"),
            },
            idempotency_key=_key(job, "modal"),
        )


def metrics_outcome(job: JobView, *, after_commit: Session | None = None) -> None:
    """A metrics job's end: the figures it stored to the business's dashboards, or a toast
    saying they could not be computed."""
    ui = _closing(job, after_commit)
    figures = (job.result or {}).get("metrics")
    if job.status == "succeeded" and figures is not None and job.business_id:
        push_metrics(job.business_id, figures, job, after_commit=after_commit)
    elif job.status == "failed":
        _toast(ui, job, "Metrics failed", job.error or "Could not compute metrics", "error")
    elif job.status == "cancelled":
        _cancelled(ui, job, "Metrics")


def import_outcome(job: JobView, *, after_commit: Session | None = None) -> None:
    """An import's one toast: how many of its orders were created and how many were not."""
    counts = job.result or {}
    ui = _closing(job, after_commit, counts.get("total"))
    created, failed = counts.get("created", 0), counts.get("failed", 0)
    skipped = counts.get("cancelled", 0) + counts.get("lost", 0)
    not_created = f"{created} orders created, {failed + skipped} not created"
    variant: ToastVariant
    if job.status == "cancelled":
        title, variant, description = "Import cancelled", "info", not_created
    elif job.status == "failed":
        title, variant, description = "Import failed", "error", f"{job.error}: {not_created}"
    else:
        title, variant = "Orders imported", "success" if failed == 0 else "warning"
        description = f"{created} orders created, {failed} failed"
    _toast(ui, job, title, description, variant)


def push_metrics(
    business_id: str,
    metrics: dict[str, Any],
    job: JobView | None = None,
    *,
    after_commit: Session | None = None,
) -> None:
    """The dashboard's ui_update, to every member of the business.

    Versioned by when the figures were computed (`computed_at`, taken before their queries, in
    µs): of two computations that finish out of order (beat's and a recalculation, or two
    workers), the page keeps the later one's figures."""
    update = MetricsUpdate(businessId=business_id, metrics=metrics)
    computed = datetime.fromisoformat(update.metrics.computed_at)
    ui = UIManager.for_business(business_id)
    if job is not None:
        ui = ui.with_context(jobId=job.id)
    target: Target = ui if after_commit is None else ui.after_commit(after_commit)
    target.update_ui(
        update,
        coalesce_key=f"metrics:{business_id}",
        idempotency_key=_key(job, "metrics") if job is not None else None,
        version=round(computed.timestamp() * 1_000_000),
    )


async def payment_update(change: PaymentChange) -> None:
    """A Stripe event moved a payment (committed): its owner's page shows the new state, and
    the order's row once it is paid (a webhook may be the first to know).

    Async, for the webhook route, whose AsyncUIManager publishes without a thread."""
    ui = AsyncUIManager.for_user(change.user_id).with_context(jobId=change.job_id)
    await ui.update_ui(
        PaymentUpdate(
            paymentId=str(change.payment_id),
            orderId=str(change.order_id),
            jobId=change.job_id,
            status=change.status,
        ),
    )
    if change.status == "succeeded":
        order_id = str(change.order_id)
        await ui.update_ui(
            OrderUpdate(orderId=order_id, status="paid"), coalesce_key=f"order:{order_id}"
        )
