"""Request and response bodies of the job API (the OpenAPI schema at /docs comes from here)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from api.currencies import ISO_4217
from domain.jobs import JobKind, JobStatus
from realtime.ids import IdText

# Stripe's largest amount for most currencies: 8 digits in minor units.
MAX_AMOUNT = 99_999_999
# The largest request body the API reads (api.refusals.BodyLimit answers 413 past it).
MAX_BODY_BYTES = 64 * 1024
# An import: up to MAX_IMPORT orders of a few items each (about 1 KiB an order).
MAX_IMPORT = 1000
IMPORT_MAX_BODY_BYTES = 1024 * 1024


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


def _no_nul(text: str) -> str:
    """PostgreSQL cannot store NUL in text. (A lone surrogate, which no database and no UTF-8
    can hold, is refused by pydantic itself: `string_unicode`.)"""
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    return text


def _utc(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; every time the API shows is UTC and says so."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
Text = Annotated[str, AfterValidator(_no_nul)]
Currency = Annotated[
    str,
    Field(min_length=3, max_length=3, json_schema_extra={"enum": sorted(ISO_4217)}),
    AfterValidator(_iso_currency),
]
MinorUnits = Annotated[int, Field(strict=True, ge=1, le=MAX_AMOUNT)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OrderItemIn(_Body):
    sku: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    name: Text = Field(min_length=1, max_length=300)
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


class ImportIn(_Body):
    """A batch of orders, created as one job; one invalid order refuses the whole batch."""

    orders: list[OrderIn] = Field(min_length=1, max_length=MAX_IMPORT)


class PaymentIn(_Body):
    order_id: str = Field(min_length=1, max_length=20, pattern=r"^[0-9]+$")
    payment_method: str = Field(min_length=4, max_length=100, pattern=r"^pm_[A-Za-z0-9_]+$")
    success_url: Annotated[Text, Field(max_length=2048), AfterValidator(_relative_path)] | None = (
        None
    )


class MetricsIn(_Body):
    business_id: IdText | None = None


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus
    status_url: str


class JobOut(BaseModel):
    job_id: str
    kind: JobKind
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


class FieldError(BaseModel):
    """One thing wrong with a request: where (`loc`, e.g. `["body", "items", 0, "quantity"]`)
    and why. The value that was sent is never echoed."""

    loc: list[str | int]
    msg: str
    type: str
    ctx: dict[str, Any] | None = None


class Invalid(BaseModel):
    """A 422: the fields that were wrong, or one sentence that names the field."""

    detail: list[FieldError] | str


_REFUSALS: dict[int, tuple[type[BaseModel], str]] = {
    400: (Problem, "The body cannot be parsed (e.g. not UTF-8); a webhook: not a signed event"),
    401: (Problem, "No bearer token, or an invalid or expired one (see WWW-Authenticate)"),
    403: (Problem, "Not the caller's to ask for"),
    404: (Problem, "No such resource of the caller's"),
    409: (Problem, "The resource's state does not allow it"),
    413: (
        Problem,
        f"The body is over {MAX_BODY_BYTES} bytes ({IMPORT_MAX_BODY_BYTES} for an import)",
    ),
    422: (Invalid, "Invalid input, naming the field"),
}


def refusals(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` of an operation that can refuse with `codes` (all JSON)."""
    return {
        code: {"model": _REFUSALS[code][0], "description": _REFUSALS[code][1]} for code in codes
    }
