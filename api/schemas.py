"""Request and response bodies of the job API (the OpenAPI schema at /docs comes from here)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NotRequired

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
    with_config,
)
from typing_extensions import TypedDict

from api.currencies import ISO_4217
from domain.jobs import JobKind, JobStatus
from realtime.broker.log_calls import MAX_FRAME_BYTES, Retention
from realtime.events import DEFAULT_TTL_SECONDS, UIEvent, encode_event
from realtime.ids import IdText
from realtime.manager import AnyEvent
from realtime.recipients import Recipient

# Stripe's largest amount for most currencies: 8 digits in minor units.
MAX_AMOUNT = 99_999_999
# The largest request body the API reads (api.refusals.BodyLimit answers 413 past it).
MAX_BODY_BYTES = 64 * 1024


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
    413: (Problem, f"The body is over {MAX_BODY_BYTES} bytes"),
    422: (Invalid, "Invalid input, naming the field"),
}


def refusals(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` of an operation that can refuse with `codes` (all JSON)."""
    return {
        code: {"model": _REFUSALS[code][0], "description": _REFUSALS[code][1]} for code in codes
    }


# --- The publish API (api/routes/publish.py): any producer, in any language -----------------

# One publish: an event may be MAX_FRAME_BYTES once encoded, and its JSON in a request may be
# longer than the frame the log stores (escapes such as \u00e9, whitespace, the envelope).
PUBLISH_MAX_BODY_BYTES = 2 * MAX_FRAME_BYTES
# A batch: 1,000 items of 1 KiB on average (a toast of a sentence to 1,000 users: ~200 KB).
# Not 1,000 events of the largest size (64 MiB): the API parses and validates a body on its
# event loop (pure CPU, which no thread can take off it), for a time that grows with the
# body's size, densest JSON slowest (measured: bench/results/design-figures.md), so this
# limit also bounds how long the loop can stall. Bigger payloads go in several batches.
PUBLISH_BATCH_MAX_BODY_BYTES = 1024 * 1024
PUBLISH_BATCH_MAX_ITEMS = 1000
# An event id, as the publisher returns it and as a frame's `id` starts (realtime/frames.py).
EXAMPLE_EVENT_ID = "u1796116368526123.1796116370000001-0"


def _strictly_true(value: object) -> object:
    """`true` and nothing else: a Literal[True] alone would also take 1, which the schema
    (`const: true`, a boolean) refuses."""
    if value is not True:
        raise ValueError("must be true")
    return value


@with_config(
    ConfigDict(
        extra="forbid",
        json_schema_extra={
            "minProperties": 1,
            "maxProperties": 1,
            "examples": [{"user": "42"}, {"business": "b1"}, {"everyone": True}],
        },
    )
)
class PublishTo(TypedDict, total=False):
    """Who an event is for: exactly one of a user, a business (every user whose token carries
    that `business_id`) or everyone. A TypedDict, not a model: a member is there or not,
    never null, so a refusal names just the member (`to.user`)."""

    user: Annotated[IdText, Field(description="A user id (a token's `sub`)")]
    business: Annotated[IdText, Field(description="A business id (a token's `business_id`)")]
    everyone: Annotated[
        Literal[True], BeforeValidator(_strictly_true), Field(description="Every connected user")
    ]


def _exactly_one(to: PublishTo) -> PublishTo:
    if len(to) != 1:
        raise ValueError("give exactly one of user, business or everyone")
    return to


def recipient_of(to: PublishTo) -> Recipient:
    """The addressee a (validated) `to` names."""
    if "user" in to:
        return Recipient.user(to["user"])
    if "business" in to:
        return Recipient.business(to["business"])
    return Recipient.everyone()


def _fits_a_frame(event: AnyEvent) -> AnyEvent:
    """The log refuses a bigger event (realtime/eventlog.py); a batch must know before it
    publishes anything."""
    size = len(encode_event(event).encode())
    if size > MAX_FRAME_BYTES:
        raise ValueError(f"the event is {size} bytes encoded, over {MAX_FRAME_BYTES}")
    return event


_TTL_DEFAULTS = ", ".join(f"{kind} {ttl} s" for kind, ttl in DEFAULT_TTL_SECONDS.items())


@with_config(ConfigDict(extra="forbid", allow_inf_nan=False))
class PublishIn(TypedDict):
    """One UI event for one addressee, as `UIManager.publish` takes it. The optional members
    are left out, never null."""

    to: Annotated[PublishTo, AfterValidator(_exactly_one)]
    event: Annotated[
        UIEvent,
        AfterValidator(_fits_a_frame),
        Field(
            description="One of the five UI events (realtime/events.py), without `id`: the "
            f"log adds it. At most {MAX_FRAME_BYTES} bytes once encoded."
        ),
    ]
    ttl_seconds: NotRequired[
        Annotated[
            float,
            Field(
                strict=True,
                gt=0,
                description="How long the event stays worth replaying to a client that "
                f"reconnects. Default by type ({_TTL_DEFAULTS}); at most the log's retention, "
                "EVENTS_MAX_AGE_SECONDS (3600 by default).",
            ),
        ]
    ]
    coalesce_key: NotRequired[
        Annotated[
            str,
            Field(
                min_length=1,
                max_length=200,
                pattern=r"^[^\n]+$",
                description="A newer event with the same key replaces an older one still "
                "waiting in a slow client's send buffer: for state snapshots (ui_update), "
                "never for deltas.",
            ),
        ]
    ]


def ttl_of(item: PublishIn, retention: Retention) -> float:
    """The TTL to publish with: the one asked for, else the type's default, which a log kept
    for less time than that default (EVENTS_MAX_AGE_SECONDS) shortens."""
    if "ttl_seconds" in item:
        return item["ttl_seconds"]
    return min(DEFAULT_TTL_SECONDS[item["event"].type], retention.max_age_seconds)


class PublishBatchIn(BaseModel):
    """Several events, validated whole before any is published, published in order."""

    model_config = ConfigDict(extra="forbid")

    items: list[PublishIn] = Field(min_length=1, max_length=PUBLISH_BATCH_MAX_ITEMS)


class Published(BaseModel):
    id: str = Field(
        description="The event's id: the first part of the `id` of the frame that carries it",
        examples=[EXAMPLE_EVENT_ID],
    )


class PublishedBatch(BaseModel):
    ids: list[str] = Field(
        description="The events' ids, in the order of the items", examples=[[EXAMPLE_EVENT_ID]]
    )
