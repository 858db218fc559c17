"""Insight's own `ui_update` payloads: what the job workers tell the page, typed.

They travel as the seed's `ui_update` (`{"type":"ui_update","data":{"type":"job_progress",...}}`),
unchanged on the wire; declaring them lets the producer refuse a malformed one and gives the
page's TypeScript their fields. An application declares its own payloads the same way, on
`UpdatePayload`, in a module named by INSIGHT_EVENT_MODULES. Keys are the page's (camelCase).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from realtime.events import UpdatePayload
from realtime.ids import IdText

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
OrderStatus = Literal["created", "paid"]


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


class MetricsWindow(BaseModel):
    """A business's figures over one window; money per currency, in minor units."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    orders: int = Field(ge=0)
    paid_orders: int = Field(ge=0)
    revenue: dict[str, int]
    average_order_value: dict[str, int]
    payment_success_rate: float | None = Field(ge=0, le=1)


class BusinessFigures(BaseModel):
    """A business's figures for today (UTC), the last 7 days and the last 30 days."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    today: MetricsWindow
    last_7_days: MetricsWindow = Field(alias="7d")
    last_30_days: MetricsWindow = Field(alias="30d")
    computed_at: str = Field(description="When they were computed (ISO 8601)")


class MetricsUpdate(UpdatePayload):
    """A business's figures, freshly computed, for its dashboards."""

    type: Literal["metrics_update"] = "metrics_update"
    businessId: IdText
    metrics: BusinessFigures


class PaymentUpdate(UpdatePayload):
    """A payment's state moved (a Stripe webhook): its owner's page shows the new state."""

    type: Literal["payment_update"] = "payment_update"
    paymentId: str = Field(min_length=1, max_length=200)
    orderId: str = Field(min_length=1, max_length=200)
    jobId: str = Field(min_length=1, max_length=200)
    status: str = Field(min_length=1, max_length=64)


class OrderUpdate(UpdatePayload):
    """An order changed: its job created it, or a payment paid it. The page updates its row
    without asking the API again."""

    type: Literal["order_update"] = "order_update"
    orderId: str = Field(min_length=1, max_length=200)
    status: OrderStatus
