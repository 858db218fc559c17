"""What the local Stripe-compatible server knows: the test payment methods as Stripe's test
mode defines them, its state (intents, charges, idempotency keys, faults), and Stripe's shapes
for ids and errors."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import JSONResponse

SUCCEEDING_METHODS = {"pm_card_visa", "pm_card_mastercard", "pm_card_amex", "pm_card_visa_debit"}
DECLINING_METHODS = {
    "pm_card_chargeDeclined": ("card_declined", "generic_decline", "Your card was declined."),
    "pm_card_chargeDeclinedInsufficientFunds": (
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
    "pm_card_chargeDeclinedExpiredCard": ("expired_card", "expired_card", "Your card has expired."),
    "pm_card_chargeDeclinedIncorrectCvc": (
        "incorrect_cvc",
        "incorrect_cvc",
        "Your card's security code is incorrect.",
    ),
}
FAULT_KINDS = ("http_500", "http_429", "slow", "lose_response")


def new_id(prefix: str) -> str:
    """An object id of Stripe's shape: `pi_…`, `ch_…`, `evt_…`."""
    return f"{prefix}_{secrets.token_hex(12)}"


def stripe_error(status: int, type_: str, message: str, **extra: Any) -> JSONResponse:
    """An error answer in Stripe's shape, which the `stripe` library turns into its errors."""
    return JSONResponse({"error": {"type": type_, "message": message, **extra}}, status_code=status)


@dataclass
class Fault:
    """A fault switched on through /_insight/faults, for its next `remaining` requests."""

    kind: str
    remaining: int
    delay_seconds: float


@dataclass
class StripeState:
    """Everything the server remembers: intents, charges, idempotency keys, faults."""

    payment_intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: list[dict[str, Any]] = field(default_factory=list)
    # (secret key, idempotency key) -> (request fingerprint, status, body); None while running
    idempotency: dict[tuple[str, str], tuple[str, int, bytes] | None] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    requests: int = 0
    # Requests answered from the idempotency cache, or refused while their key was in use.
    replayed: int = 0
    key_in_use: int = 0

    def next_fault(self) -> Fault | None:
        while self.faults:
            fault = self.faults[0]
            if fault.remaining > 0:
                fault.remaining -= 1
                return fault
            self.faults.pop(0)
        return None
