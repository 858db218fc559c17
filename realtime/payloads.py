"""Insight's own `ui_update` payloads: what the job workers tell the page, typed.

They travel as the seed's `ui_update` (`{"type":"ui_update","data":{"type":"job_progress",...}}`),
unchanged on the wire; declaring them lets the producer refuse a malformed one and gives the
page's TypeScript their fields. An application declares its own payloads the same way, on
`UpdatePayload`, in a module named by INSIGHT_EVENT_MODULES. Keys are the page's (camelCase).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, JsonValue

from realtime.events import UpdatePayload
from realtime.ids import IdText

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobProgress(UpdatePayload):
    """How far a job is: sent while it runs and once more with its terminal status."""

    type: Literal["job_progress"] = "job_progress"
    jobId: str = Field(min_length=1, max_length=200)
    kind: str = Field(min_length=1, max_length=64)
    status: JobStatus
    percent: int = Field(ge=0, le=100)
    done: int | None = Field(default=None, ge=0)
    total: int | None = Field(default=None, ge=0)
    etaSeconds: float | None = Field(default=None, ge=0)
    attempt: int | None = Field(default=None, ge=1)


class MetricsUpdate(UpdatePayload):
    """A business's figures, freshly computed, for its dashboards."""

    type: Literal["metrics_update"] = "metrics_update"
    businessId: IdText
    metrics: dict[str, JsonValue]


class PaymentUpdate(UpdatePayload):
    """A payment's state moved (a Stripe webhook): its owner's page shows the new state."""

    type: Literal["payment_update"] = "payment_update"
    paymentId: str = Field(min_length=1, max_length=200)
    orderId: str = Field(min_length=1, max_length=200)
    jobId: str = Field(min_length=1, max_length=200)
    status: str = Field(min_length=1, max_length=64)
