"""POST /publish and /publish/batch: UI events from any producer, in any language.

The HTTP twin of `UIManager` (realtime/publisher.py) for processes that are not Python, or
not allowed near Redis: a Node.js service, a Go worker, a shell script. The events are the
same (realtime/events.py validates them), they take the same path (the recipient's durable
log and its live channel, in one Redis script) and keep the same guarantees, including
idempotency: the `Idempotency-Key` header is the publisher's `idempotency_key`.

The caller is a server, authenticated by one of PUBLISH_API_KEYS (api.deps.server_key). The
routes are async and publish with `AsyncUIManager`, so a Redis round trip never holds the
event loop; a batch is published item by item, in order, awaiting each.

A publish that this route would accept is served by `api.publish_lane` before FastAPI's
routing (the same checks and publish, imported from here, at about 0.6 times the CPU); every
other request reaches this route, which stays the one place of every refusal and of the
OpenAPI entry.

Never a 5xx for something the caller can fix or wait out: what the schema cannot say (a TTL
past the log's retention, which is configuration) is a 422 naming the field, and Redis not
answering is a 503 with Retry-After.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, HTTPException, status
from fastapi.exceptions import RequestValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from api.deps import SettingsDep, server_key
from api.publish_schemas import (
    EXAMPLE_EVENT_ID,
    PUBLISH_BATCH_MAX_BODY_BYTES,
    PUBLISH_BATCH_MAX_ITEMS,
    PUBLISH_MAX_BODY_BYTES,
    PublishBatchIn,
    Published,
    PublishedBatch,
    PublishIn,
    item_ttl,
    recipient_of,
)
from api.refusals import REDIS_FAILURES, RETRY_AFTER_SECONDS, BodyLimit, unavailable
from api.schemas import Problem, refusals
from api.telemetry import ROUTE_TEMPLATE
from core.app_path import app_path
from realtime import PublishOptions
from realtime.eventlog import Retention
from realtime.events import Event, Modal, ModalContent, Redirect, Refresh, Toast, Update
from realtime.options import IDEMPOTENCY_KEY_CHARACTERS
from realtime.options import MAX_IDEMPOTENCY_KEY as LOG_MAX_IDEMPOTENCY_KEY
from realtime.payloads import JobProgress
from realtime.publisher import AsyncUIManager

logger = logging.getLogger(__name__)

router = APIRouter(tags=["publish"], dependencies=[Depends(server_key)])

# The body limit of each route, under the router's prefix (api.main applies them).
BODY_LIMITS: Mapping[str, int] = {
    "/publish": PUBLISH_MAX_BODY_BYTES,
    "/publish/batch": PUBLISH_BATCH_MAX_BODY_BYTES,
}
# The log's idempotency keys (realtime/options.py), 10 characters shorter: a batch adds
# `:<item index>` (at most 4 more) to the header's.
MAX_IDEMPOTENCY_KEY = LOG_MAX_IDEMPOTENCY_KEY - 10
IDEMPOTENCY_KEY_PATTERN = rf"^{IDEMPOTENCY_KEY_CHARACTERS}+$"

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="Publish at most once: a repeat with the same key, to the same addressee, "
        "within the log's retention returns the first id and publishes nothing (whatever its "
        "event). For a batch, item n uses the key `<key>:<n>`. Printable ASCII, no spaces.",
    ),
]


def _example(to: dict[str, Any], event: Event, **options: Any) -> dict[str, Any]:
    """A request body, its event made by realtime/events.py's own models."""
    return {"to": to, "event": event.model_dump(mode="json"), **options}


_TOAST = _example(
    {"user": "42"}, Toast(title="Report ready", description="March is ready", variant="success")
)
_EXAMPLES: dict[str, Any] = {
    "toast": {"summary": "A toast to one user", "value": _TOAST},
    "update": {
        "summary": "A job's progress (a typed payload, realtime/payloads.py), coalesced",
        "value": _example(
            {"user": "42"},
            Update(
                data=JobProgress(jobId="j17", kind="order", status="running", percent=40).as_data()
            ),
            coalesce_key="job:j17",
        ),
    },
    "redirect": {
        "summary": "A redirect, replayable for 30 s only",
        "value": _example(
            {"user": "42"}, Redirect(target="/orders?status=success"), ttl_seconds=30
        ),
    },
    "modal": {
        "summary": "A modal",
        "value": _example(
            {"user": "42"},
            Modal(data=ModalContent(type="payment_failed", payload={"orderId": "17"})),
        ),
    },
    "refresh": {
        "summary": "A refresh for everyone",
        "value": _example({"everyone": True}, Refresh()),
    },
}
_BATCH_EXAMPLES: dict[str, Any] = {
    "fan-out": {
        "summary": "A toast to two users, then a refresh of their business",
        "value": {
            "items": [
                _TOAST,
                {**_TOAST, "to": {"user": "43"}},
                _example({"business": "b1"}, Refresh()),
            ]
        },
    }
}


def _responses(limit: int, answer: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """What these routes answer: `refusals()`, told for a server key and this route's limit."""
    documented = refusals(400, 401, 403, 413, 422)
    documented[200] = {"content": {"application/json": {"example": answer}}}
    documented[401] |= {
        "description": "No server key, or one that is not in PUBLISH_API_KEYS",
        "headers": {
            "WWW-Authenticate": {"schema": {"type": "string"}, "required": True},
        },
    }
    documented[403] |= {"description": "A user's JWT, which is never a server credential"}
    documented[413] |= {"description": f"The body is over {limit} bytes"}
    documented[503] = {
        "model": Problem,
        "description": "Redis did not answer; retry after Retry-After seconds with the same "
        "Idempotency-Key (a batch may have published some of its items: the key publishes "
        "the rest, once)",
        "headers": {
            "Retry-After": {"schema": {"type": "string"}, "required": True},
        },
    }
    return documented


@router.post(
    "/publish",
    response_model=Published,
    summary="Publish one UI event",
    responses=_responses(PUBLISH_MAX_BODY_BYTES, {"id": EXAMPLE_EVENT_ID}),
)
async def publish(
    body: Annotated[PublishIn, Body(openapi_examples=_EXAMPLES)],
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Published:
    """Validate the event, append it to its addressee's log and announce it: every socket of
    that user (business, everyone) receives it, and a client that reconnects with `since`
    gets it within its TTL. Answers the event id, which starts the `id` of the frame."""
    retention = settings.retention
    refuse_before_publishing([body], retention, lambda _: ("body",))
    [event_id] = await publish_items([body], [idempotency_key], retention)
    return Published(id=event_id)


@router.post(
    "/publish/batch",
    response_model=PublishedBatch,
    summary=f"Publish up to {PUBLISH_BATCH_MAX_ITEMS} UI events, in order",
    responses=_responses(PUBLISH_BATCH_MAX_BODY_BYTES, {"ids": [EXAMPLE_EVENT_ID]}),
)
async def publish_batch(
    body: Annotated[PublishBatchIn, Body(openapi_examples=_BATCH_EXAMPLES)],
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> PublishedBatch:
    """Validate every item, then publish them one after the other: one bad item is a 422
    naming it (`items.<n>.<field>`) and nothing is published. Answers the ids in the order
    of the items. With `Idempotency-Key: K`, item n is published with the key `K:n`, so a
    retry after a 503 publishes exactly the items that were not."""
    retention = settings.retention
    refuse_before_publishing(body.items, retention, lambda n: ("body", "items", n))
    keys = [
        None if idempotency_key is None else f"{idempotency_key}:{n}"
        for n in range(len(body.items))
    ]
    return PublishedBatch(ids=await publish_items(body.items, keys, retention))


def refuse_before_publishing(
    items: Sequence[PublishIn], retention: Retention, where: Callable[[int], tuple[str | int, ...]]
) -> None:
    """A TTL past the log's retention (configuration, so not in the schema), or a version
    without the coalesce key it orders, is a 422 too, found before anything is published."""
    longest = retention.max_age_seconds
    errors: list[dict[str, Any]] = [
        {
            "type": "less_than_equal",
            "loc": (*where(n), "ttl_seconds"),
            "msg": f"Input should be less than or equal to {longest}, the log's retention "
            "(EVENTS_MAX_AGE_SECONDS)",
            "ctx": {"le": longest},
        }
        for n, item in enumerate(items)
        if item.get("ttl_seconds", 0) > longest
    ]
    errors += [
        {
            "type": "missing",
            "loc": (*where(n), "coalesce_key"),
            "msg": "version orders the snapshots of one coalesce_key: give one",
        }
        for n, item in enumerate(items)
        if "version" in item and "coalesce_key" not in item
    ]
    if errors:
        raise RequestValidationError(errors)


async def publish_items(
    items: Sequence[PublishIn], keys: Sequence[str | None], retention: Retention
) -> list[str]:
    """Publish validated items in order with AsyncUIManager; their ids."""
    ids: list[str] = []
    try:
        for item, key in zip(items, keys, strict=True):
            manager = AsyncUIManager(recipient_of(item["to"]))
            options = PublishOptions(
                item_ttl(item, retention),
                item.get("coalesce_key"),
                key,
                version=item.get("version"),
            )
            event_id = await manager.publish(item["event"], options)
            ids.append(event_id)
    except REDIS_FAILURES as error:
        logger.warning(
            "publish: Redis did not answer after %d of %d events: %r", len(ids), len(items), error
        )
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"{unavailable(error)}; {len(ids)} of {len(items)} events were published: retry "
            "with the same Idempotency-Key",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from None
    except ValueError as error:
        # Unreachable by design: the schemas check all the log checks (realtime/eventlog.py).
        # Should the two drift apart, the caller still gets a 422 and never a 500.
        logger.error("publish: the log refused a validated event: %s", error)
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("body",), "msg": str(error)}]
        ) from None
    return ids


class BodyLimits:
    """api.refusals.BodyLimit, with a limit of its own for some paths: the publish routes take
    bigger bodies (api/schemas.py says why and how big), every other path keeps `max_bytes`.
    The path is matched without the ASGI root path, so a proxy prefix changes nothing."""

    def __init__(self, app: ASGIApp, max_bytes: int, by_path: Mapping[str, int]) -> None:
        self._default = BodyLimit(app, max_bytes)
        self._by_path = {path: BodyLimit(app, limit) for path, limit in by_path.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = app_path(scope) if scope["type"] == "http" else ""
        limit = self._by_path.get(path)
        if limit is None:
            await self._default(scope, receive, send)
            return
        # A 413 answered before routing is still a request to this route, counted as one.
        scope.setdefault(ROUTE_TEMPLATE, path)
        await limit(scope, receive, send)
