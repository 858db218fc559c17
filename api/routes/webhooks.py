"""POST /webhooks/stripe: Stripe's signed events (verified on the raw body)."""

from __future__ import annotations

import json
import logging
import math
from typing import Annotated, Any, NoReturn

import stripe
from fastapi import APIRouter, Header, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool

from api.deps import SessionDep, SettingsDep
from api.schemas import refusals
from domain import announcements
from domain.webhooks import apply_event

logger = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])

TOLERANCE_SECONDS = 300


def _finite(number: str) -> float:
    value = float(number)
    if not math.isfinite(value):  # 1e400
        raise ValueError("not a finite number")
    return value


def _refuse_constant(name: str) -> NoReturn:  # NaN, Infinity, -Infinity: not JSON
    raise ValueError(f"not JSON: {name}")


def _stripe_event(payload: bytes) -> dict[str, Any] | None:
    """The event in `payload` if it is one Stripe could have sent: standard JSON (no NaN or
    Infinity), an `id` and a `type` that fit their columns, and no text a database cannot
    store (NUL, lone surrogates) anywhere in it."""
    try:
        event = json.loads(payload, parse_float=_finite, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return None
    if not isinstance(event, dict):
        return None
    for key, longest in (("id", 255), ("type", 100)):
        value = event.get(key)
        if not (isinstance(value, str) and 0 < len(value) <= longest and value.isprintable()):
            return None
    return event if _storable(event) else None


def _storable(document: object) -> bool:
    pending = [document]
    while pending:  # a loop, not recursion: the nesting is the sender's choice
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str) and not _storable_text(value):
            return False
    return True


def _storable_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, from a "\ud800" escape
        return False
    return "\x00" not in text


@router.post("/webhooks/stripe", responses=refusals(400, 413, 422))
async def stripe_webhook(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> dict[str, bool]:
    """Verify, dedupe by event id, apply forward-only, and tell the payment owner's page."""
    payload = await request.body()
    try:
        stripe.WebhookSignature.verify_header(
            payload.decode(),
            stripe_signature,
            settings.stripe_webhook_secret.get_secret_value(),
            TOLERANCE_SECONDS,
        )
    except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as error:
        logger.warning("webhook refused", extra={"reason": type(error).__name__})
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "invalid Stripe-Signature") from None
    event = _stripe_event(payload)
    if event is None:
        logger.warning("webhook refused", extra={"reason": "not a Stripe event"})
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "not a Stripe event")
    first, change = await run_in_threadpool(apply_event, session, event)
    if change is not None:  # published after the commit of the change it announces
        await announcements.payment_update(change)
    return {"received": True, "duplicate": not first}
