"""The job API's edges: authentication, validation that names the field, ownership."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.harness import unique
from tests.stack import COFFEE, Stack


def item(**overrides: Any) -> dict[str, Any]:
    return {**COFFEE["items"][0], **overrides}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"currency": "usd"}, "items"),
        ({"items": [], "currency": "usd"}, "items"),
        ({"items": [item(quantity=0)], "currency": "usd"}, "quantity"),
        ({"items": [item(quantity="2")], "currency": "usd"}, "quantity"),
        ({"items": [item(quantity=1.5)], "currency": "usd"}, "quantity"),
        ({"items": [item(unit_amount=-450)], "currency": "usd"}, "unit_amount"),
        ({"items": [item(unit_amount=10**12)], "currency": "usd"}, "unit_amount"),
        ({"items": [item(quantity=10_000, unit_amount=99_999)], "currency": "usd"}, "items"),
        ({"items": [item(sku="")], "currency": "usd"}, "sku"),
        ({"items": [item(colour="red")], "currency": "usd"}, "colour"),
        ({"items": [item()], "currency": "USD"}, "currency"),
        ({"items": [item()], "currency": "xyz"}, "currency"),
        ({"items": [item()]}, "currency"),
    ],
)
def test_a_malformed_order_gets_422_naming_the_field(
    stack: Stack, token: Callable[..., str], body: dict[str, Any], field: str
) -> None:
    response = stack.post("/orders", token(unique("u")), body)
    assert response.status_code == 422
    assert field in response.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"payment_method": "pm_card_visa"}, "order_id"),
        ({"order_id": "abc", "payment_method": "pm_card_visa"}, "order_id"),
        ({"order_id": "1", "payment_method": "visa"}, "payment_method"),
        (
            {
                "order_id": "1",
                "payment_method": "pm_card_visa",
                "success_url": "https://evil.example",
            },
            "success_url",
        ),
        (
            {"order_id": "1", "payment_method": "pm_card_visa", "success_url": "//evil.example"},
            "success_url",
        ),
    ],
)
def test_a_malformed_payment_gets_422_naming_the_field(
    stack: Stack, token: Callable[..., str], body: dict[str, Any], field: str
) -> None:
    response = stack.post("/payments", token(unique("u")), body)
    assert response.status_code == 422
    assert field in response.text


def test_broken_json_is_422_not_500(stack: Stack, token: Callable[..., str]) -> None:
    response = httpx.post(
        f"{stack.api.http_url}/api/v1/orders",
        content=b'{"items": [',
        timeout=10,
        headers={"Authorization": f"Bearer {token('u')}", "Content-Type": "application/json"},
    )
    assert response.status_code == 422


def test_an_oversized_body_is_refused_with_413(stack: Stack, token: Callable[..., str]) -> None:
    body = {"items": [item(name="x" * 300)] * 100, "currency": "usd", "pad": "y" * 100_000}
    assert stack.post("/orders", token("u"), body).status_code == 413


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-jwt", "Basic dXNlcjpwYXNz"])
def test_no_token_or_a_bad_one_is_401_with_www_authenticate(
    stack: Stack, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = httpx.post(f"{stack.api.http_url}/api/v1/orders", json=COFFEE, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert stack.get("/orders", "expired.or.bad").status_code == 401


def test_unknown_order_and_job_are_404(stack: Stack, token: Callable[..., str]) -> None:
    user = token(unique("u"))
    assert stack.get("/orders/999999", user).status_code == 404
    assert stack.get("/orders/not-a-number", user).status_code == 404
    assert stack.get("/jobs/00000000-0000-0000-0000-000000000000", user).status_code == 404
    paying = stack.post("/payments", user, {"order_id": "999999", "payment_method": "pm_card_visa"})
    assert paying.status_code == 404


def test_paying_an_order_twice_is_409(stack: Stack, token: Callable[..., str]) -> None:
    user = token(unique("u"))
    order_id, payment = stack.paid_order(user)
    assert payment["status"] == "succeeded"
    again = stack.post("/payments", user, {"order_id": order_id, "payment_method": "pm_card_visa"})
    assert again.status_code == 409
    assert "already paid" in again.json()["detail"]


def test_metrics_of_another_business_are_forbidden_and_a_business_is_required(
    stack: Stack, token: Callable[..., str]
) -> None:
    assert (
        stack.post("/metrics/recalculate", token("u", "b1"), {"business_id": "b2"}).status_code
        == 403
    )
    missing = stack.post("/metrics/recalculate", token("loner"), {})
    assert missing.status_code == 422
    assert "business_id" in missing.json()["detail"]


def test_the_request_id_is_echoed_and_generated_when_missing(
    stack: Stack, token: Callable[..., str]
) -> None:
    echoed = stack.post("/orders", token(unique("u")), COFFEE, **{"X-Request-ID": "req-123"})
    assert echoed.headers["X-Request-ID"] == "req-123"
    assert len(stack.post("/orders", token(unique("u")), COFFEE).headers["X-Request-ID"]) == 32


def test_openapi_documents_every_request_and_response_model(stack: Stack) -> None:
    spec = httpx.get(f"{stack.api.http_url}/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert {"OrderIn", "PaymentIn", "MetricsIn", "JobAccepted", "JobOut", "OrderOut"} <= set(
        schemas
    )
    assert "/api/v1/webhooks/stripe" in spec["paths"]
    assert httpx.get(f"{stack.api.http_url}/docs").status_code == 200


def test_health_and_readiness(stack: Stack) -> None:
    assert httpx.get(f"{stack.api.http_url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{stack.api.http_url}/readyz").json()
    assert ready["checks"] == {"redis": True, "database": True}


def test_a_repeated_payment_key_returns_the_first_job_even_once_the_order_is_paid(
    stack: Stack, token: Callable[..., str]
) -> None:
    user = token(unique("u"))
    order_id = stack.order(user)
    body = {"order_id": order_id, "payment_method": "pm_card_visa"}
    first = stack.post("/payments", user, body, **{"Idempotency-Key": "pay-1"})
    assert stack.wait_job(first.json()["job_id"], user)["status"] == "succeeded"
    again = stack.post("/payments", user, body, **{"Idempotency-Key": "pay-1"})
    assert again.status_code == 202
    assert again.json()["job_id"] == first.json()["job_id"]
    assert stack.post("/payments", user, body).status_code == 409  # a new request is refused
