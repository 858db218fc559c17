"""Request and response bodies of the server publish API (`api.routes.publish`: any producer,
in any language); the OpenAPI schema at /docs comes from here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal, NotRequired

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, with_config
from typing_extensions import TypedDict

from realtime.broker.log_calls import MAX_FRAME_BYTES, Retention
from realtime.events import Event, encode_event
from realtime.ids import IdText
from realtime.options import MAX_VERSION
from realtime.publisher import ttl_of
from realtime.recipients import Recipient
from realtime.registry import event_registry

if TYPE_CHECKING:
    DeclaredEvent = Event
else:  # the five and the application's own (INSIGHT_EVENT_MODULES), read once at import
    DeclaredEvent = event_registry().event_type

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


def _fits_a_frame(event: Event) -> Event:
    """The log refuses a bigger event (realtime/eventlog.py); a batch must know before it
    publishes anything."""
    size = len(encode_event(event).encode())
    if size > MAX_FRAME_BYTES:
        raise ValueError(f"the event is {size} bytes encoded, over {MAX_FRAME_BYTES}")
    return event


_TTL_DEFAULTS = ", ".join(
    f"{kind} {model.default_ttl_seconds} s" for kind, model in event_registry().events.items()
)


@with_config(ConfigDict(extra="forbid", allow_inf_nan=False))
class PublishIn(TypedDict):
    """One UI event for one addressee, as `UIManager.publish` takes it. The optional members
    are left out, never null."""

    to: Annotated[PublishTo, AfterValidator(_exactly_one)]
    event: Annotated[
        DeclaredEvent,
        AfterValidator(_fits_a_frame),
        Field(
            description="One of the five UI events (realtime/events.py) or of the "
            "application's own (INSIGHT_EVENT_MODULES), without `id`: the log adds it. At "
            f"most {MAX_FRAME_BYTES} bytes once encoded."
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
    version: NotRequired[
        Annotated[
            int,
            Field(
                strict=True,
                ge=0,
                le=MAX_VERSION,
                description="With coalesce_key: the snapshot's place in the order of the facts "
                "it reports. A snapshot published after one of a higher version with the same "
                "key (within the log's retention) is dropped: stored nowhere, sent to nobody, "
                "and answered with the newer event's id. For snapshots published by several "
                "processes, whose publish order is not the order of their facts.",
            ),
        ]
    ]


def item_ttl(item: PublishIn, retention: Retention) -> float:
    """The TTL to publish an item with (`realtime.publisher.ttl_of`)."""
    return ttl_of(item["event"], item.get("ttl_seconds"), retention)


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
