"""Request and response bodies of the job API (the OpenAPI schema at /docs comes from here)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from api.currencies import ISO_4217

# Stripe's largest amount for most currencies: 8 digits in minor units.
MAX_AMOUNT = 99_999_999


def _iso_currency(code: str) -> str:
    if code != code.lower():
        raise ValueError("currency codes are lower case, e.g. 'usd'")
    if code not in ISO_4217:
        raise ValueError(f"'{code}' is not an ISO 4217 currency code")
    return code


def _relative_path(url: str) -> str:
    if not url.startswith("/") or url.startswith("//") or "\\" in url:
        raise ValueError("must be a path on this site, starting with a single '/'")
    return url


def _utc(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; every time the API shows is UTC and says so."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
Currency = Annotated[str, Field(min_length=3, max_length=3), AfterValidator(_iso_currency)]
MinorUnits = Annotated[int, Field(strict=True, ge=1, le=MAX_AMOUNT)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OrderItemIn(_Body):
    sku: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    name: str = Field(min_length=1, max_length=300)
    quantity: int = Field(strict=True, ge=1, le=10_000)
    unit_amount: MinorUnits


class OrderIn(_Body):
    items: list[OrderItemIn] = Field(min_length=1, max_length=100)
    currency: Currency

    @model_validator(mode="after")
    def _total_fits(self) -> OrderIn:
        if sum(i.quantity * i.unit_amount for i in self.items) > MAX_AMOUNT:
            raise ValueError(f"items: the order total exceeds {MAX_AMOUNT} minor units")
        return self


class PaymentIn(_Body):
    order_id: str = Field(min_length=1, max_length=20, pattern=r"^[0-9]+$")
    payment_method: str = Field(min_length=4, max_length=100, pattern=r"^pm_[A-Za-z0-9_]+$")
    success_url: Annotated[str, Field(max_length=2048), AfterValidator(_relative_path)] | None = (
        None
    )


class MetricsIn(_Body):
    business_id: str | None = Field(default=None, min_length=1, max_length=200)


JobStatus = Literal["queued", "running", "succeeded", "failed"]


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus
    status_url: str


class JobOut(BaseModel):
    job_id: str
    kind: Literal["order", "payment", "metrics"]
    status: JobStatus
    result: dict[str, Any] | None
    error: str | None
    created_at: UtcDatetime
    updated_at: UtcDatetime


class OrderItemOut(BaseModel):
    sku: str
    name: str
    quantity: int
    unit_amount: int


class OrderOut(BaseModel):
    order_id: str
    status: Literal["created", "paid"]
    currency: str
    total_amount: int
    business_id: str | None
    items: list[OrderItemOut]
    created_at: UtcDatetime


class Problem(BaseModel):
    """The body of every 4xx the API itself raises."""

    detail: str
