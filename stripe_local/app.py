"""A Stripe-compatible PaymentIntents server for development and tests (`insight stripe-server`).

Speaks what the official `stripe` library sends (form-encoded POSTs, Bearer secret keys,
Idempotency-Key headers) and answers in Stripe's JSON shapes, including its error objects, so
the worker code that runs here is exactly the code that runs against Stripe. Test payment
methods behave as in Stripe's test mode; faults (429, 500, slow answers, a response lost after
the charge was made) are switched on through `/_insight/faults`, and state is visible at
`/_insight/state` so tests can count charges.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stripe_local.forms import parse_form
from stripe_local.state import (
    DECLINING_METHODS,
    FAULT_KINDS,
    SUCCEEDING_METHODS,
    Fault,
    StripeState,
    new_id,
    stripe_error,
)
from stripe_local.webhooks import WebhookSender

logger = logging.getLogger(__name__)


class StripeLocal:
    """The server's state and endpoints; `app` is the ASGI application."""

    def __init__(self, webhook_url: str | None, webhook_secret: str | None) -> None:
        self.state = StripeState()
        self.webhooks = WebhookSender(webhook_url, webhook_secret)
        self.app = Starlette(
            routes=[
                Route("/v1/payment_intents", self.create_intent, methods=["POST"]),
                Route("/v1/payment_intents/{pi}", self.retrieve_intent, methods=["GET"]),
                Route("/v1/payment_intents/{pi}/confirm", self.confirm_intent, methods=["POST"]),
                Route("/_insight/faults", self.add_fault, methods=["POST"]),
                Route("/_insight/state", self.show_state, methods=["GET"]),
                Route("/_insight/reset", self.reset, methods=["POST"]),
                Route("/_insight/events/{evt}/resend", self.resend_event, methods=["POST"]),
                Route("/healthz", lambda _: JSONResponse({"status": "ok"})),
            ],
            lifespan=self._lifespan,
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        yield
        await self.webhooks.close()

    # -- the Stripe API --------------------------------------------------------------

    async def create_intent(self, request: Request) -> Response:
        return await self._api_call(request, self._create)

    async def confirm_intent(self, request: Request) -> Response:
        return await self._api_call(request, self._confirm)

    async def retrieve_intent(self, request: Request) -> Response:
        return await self._api_call(request, self._retrieve)

    async def _api_call(self, request: Request, handler: Any) -> Response:
        key = _secret_key(request)
        if key is None:
            return stripe_error(401, "invalid_request_error", "Invalid API Key provided.")
        # Take the whole request first, as any server does: a client that dies while the
        # server is still slow does not undo work the server already has.
        params = parse_form((await request.body()).decode())
        self.state.requests += 1
        fault = self.state.next_fault()
        if fault is not None and fault.kind == "http_500":
            return stripe_error(500, "api_error", "An unknown error occurred (injected fault).")
        if fault is not None and fault.kind == "http_429":
            return stripe_error(
                429, "rate_limit_error", "Too many requests (injected fault).", code="rate_limit"
            )
        slot: tuple[str, str] | None = None
        idempotency_key = request.headers.get("idempotency-key")
        if request.method == "POST" and idempotency_key:
            slot = (key, idempotency_key)
            fingerprint = hashlib.sha256(
                json.dumps([request.url.path, params], sort_keys=True).encode()
            ).hexdigest()
            earlier = self._earlier_answer(slot, fingerprint)
            if earlier is not None:
                return earlier
            self.state.idempotency[slot] = None  # reserved at arrival, as Stripe does
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.delay_seconds)
        response: Response = handler(request, params)
        if slot is not None:
            self.state.idempotency[slot] = (fingerprint, response.status_code, bytes(response.body))
            response.headers["Idempotency-Key"] = slot[1]
        if fault is not None and fault.kind == "lose_response":
            # The work is done and remembered; the answer arrives after the client gave up.
            await asyncio.sleep(fault.delay_seconds)
        return response

    def _earlier_answer(self, slot: tuple[str, str], fingerprint: str) -> Response | None:
        """What Stripe answers for a key it has seen: in progress, mismatch, or a replay."""
        if slot not in self.state.idempotency:
            return None
        saved = self.state.idempotency[slot]
        if saved is None:
            self.state.key_in_use += 1
            return stripe_error(
                409,
                "idempotency_error",
                "A request with this key is in progress.",
                code="idempotency_key_in_use",
            )
        if saved[0] != fingerprint:
            return stripe_error(
                400,
                "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters "
                "they were first used with.",
            )
        self.state.replayed += 1
        return Response(
            saved[2],
            status_code=saved[1],
            media_type="application/json",
            headers={"Idempotent-Replayed": "true", "Idempotency-Key": slot[1]},
        )

    def _create(self, _request: Request, params: dict[str, Any]) -> Response:
        amount, currency = params.get("amount"), params.get("currency")
        if amount is None or not str(amount).isdigit() or int(amount) < 1:
            return stripe_error(
                400, "invalid_request_error", "Invalid positive integer", param="amount"
            )
        if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
            return stripe_error(400, "invalid_request_error", "Invalid currency", param="currency")
        now = int(time.time())
        intent: dict[str, Any] = {
            "id": new_id("pi"),
            "object": "payment_intent",
            "amount": int(amount),
            "amount_received": 0,
            "currency": currency.lower(),
            "status": "requires_payment_method",
            "payment_method": None,
            "metadata": params.get("metadata") or {},
            "description": params.get("description"),
            "created": now,
            "livemode": False,
            "capture_method": "automatic",
            "confirmation_method": "automatic",
            "last_payment_error": None,
            "latest_charge": None,
        }
        intent["client_secret"] = f"{intent['id']}_secret_{secrets.token_hex(8)}"
        self.state.payment_intents[intent["id"]] = intent
        if params.get("payment_method"):
            intent["payment_method"] = params["payment_method"]
            intent["status"] = "requires_confirmation"
        if str(params.get("confirm", "false")).lower() == "true":
            return self._attempt(intent, params.get("payment_method"))
        return JSONResponse(intent)

    def _confirm(self, request: Request, params: dict[str, Any]) -> Response:
        intent = self.state.payment_intents.get(request.path_params["pi"])
        if intent is None:
            return _no_such(request.path_params["pi"])
        if intent["status"] == "succeeded":
            return stripe_error(
                400,
                "invalid_request_error",
                "This PaymentIntent's status is succeeded and cannot be confirmed.",
                code="payment_intent_unexpected_state",
                payment_intent=intent,
            )
        return self._attempt(intent, params.get("payment_method") or intent["payment_method"])

    def _retrieve(self, request: Request, _params: dict[str, Any]) -> Response:
        intent = self.state.payment_intents.get(request.path_params["pi"])
        return JSONResponse(intent) if intent is not None else _no_such(request.path_params["pi"])

    def _attempt(self, intent: dict[str, Any], method: Any) -> Response:
        if not method:
            return stripe_error(
                400,
                "invalid_request_error",
                "You must provide a payment method.",
                param="payment_method",
            )
        intent["payment_method"] = method
        if method in SUCCEEDING_METHODS:
            charge = {
                "id": new_id("ch"),
                "amount": intent["amount"],
                "currency": intent["currency"],
                "payment_intent": intent["id"],
                "payment_method": method,
                "metadata": intent["metadata"],
                "created": int(time.time()),
            }
            self.state.charges.append(charge)
            intent.update(
                status="succeeded",
                amount_received=intent["amount"],
                latest_charge=charge["id"],
                last_payment_error=None,
            )
            self.webhooks.send("payment_intent.succeeded", intent)
            return JSONResponse(intent)
        if method in DECLINING_METHODS:
            code, decline_code, message = DECLINING_METHODS[method]
            error = {"code": code, "decline_code": decline_code, "payment_method": {"id": method}}
            intent.update(
                status="requires_payment_method",
                last_payment_error={"type": "card_error", "message": message, **error},
            )
            self.webhooks.send("payment_intent.payment_failed", intent)
            return stripe_error(402, "card_error", message, **error, payment_intent=intent)
        return stripe_error(
            400,
            "invalid_request_error",
            f"No such PaymentMethod: '{method}'",
            code="resource_missing",
            param="payment_method",
        )

    # -- test controls ---------------------------------------------------------------

    async def add_fault(self, request: Request) -> Response:
        body = await request.json()
        kind = body.get("kind")
        if kind not in FAULT_KINDS:
            return JSONResponse({"error": f"kind must be one of {FAULT_KINDS}"}, status_code=400)
        fault = Fault(kind, int(body.get("count", 1)), float(body.get("delay_seconds", 0)))
        self.state.faults.append(fault)
        return JSONResponse({"queued": len(self.state.faults)})

    async def show_state(self, _request: Request) -> Response:
        return JSONResponse(
            {
                "payment_intents": list(self.state.payment_intents.values()),
                "charges": self.state.charges,
                "requests": self.state.requests,
                "replayed": self.state.replayed,
                "key_in_use": self.state.key_in_use,
                "webhooks": self.webhooks.delivered,
            }
        )

    async def reset(self, _request: Request) -> Response:
        self.state = StripeState()
        return JSONResponse({"reset": True})

    async def resend_event(self, request: Request) -> Response:
        if not self.webhooks.resend(request.path_params["evt"]):
            return JSONResponse({"error": "no such event"}, status_code=404)
        return JSONResponse({"resent": request.path_params["evt"]})


def _secret_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.startswith(("sk_", "rk_")):
        return None
    return key


def _no_such(pi: str) -> JSONResponse:
    return stripe_error(
        404, "invalid_request_error", f"No such payment_intent: '{pi}'", code="resource_missing"
    )
