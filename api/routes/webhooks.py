"""POST /webhooks/stripe: Stripe's signed events (verified on the raw body)."""

from __future__ import annotations

import json
import logging
from typing import Annotated

import stripe
from fastapi import APIRouter, Header, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool

from api.deps import SessionDep, SettingsDep
from api.schemas import Problem
from realtime import AsyncUIManager
from workers.services.webhooks import apply_event

logger = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])

TOLERANCE_SECONDS = 300


@router.post("/webhooks/stripe", responses={400: {"model": Problem}})
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
        event = json.loads(payload)
    except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as error:
        logger.warning("webhook refused", extra={"reason": type(error).__name__})
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "invalid Stripe-Signature") from None
    if not isinstance(event, dict) or not {"id", "type"} <= event.keys():
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "not a Stripe event")
    first, change = await run_in_threadpool(apply_event, session, event)
    if change is not None:  # published after the commit of the change it announces
        await (
            AsyncUIManager.for_user(change.user_id)
            .with_context(jobId=change.job_id)
            .update_ui(
                {
                    "type": "payment_update",
                    "paymentId": str(change.payment_id),
                    "orderId": str(change.order_id),
                    "jobId": change.job_id,
                    "status": change.status,
                },
            )
        )
    return {"received": True, "duplicate": not first}
