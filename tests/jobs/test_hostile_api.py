"""Hostile bodies and paths on the job API (docs/security.md, "Hostile input never hangs, crashes or
leaks"): every body and path the API cannot use gets a JSON 4xx that names the limit or the
field, never a 500, and nothing of it reaches the database or a Celery message."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy import func, select

from api.schemas import MAX_BODY_BYTES as LIMIT
from core.db import build_engine
from core.models import Job
from stripe_local.webhooks import sign
from tests.harness import TEST_WEBHOOK_SECRET, unique
from tests.stack import Stack

TWO_MIB = 2 * 1024 * 1024
ORDER = (
    '{"items":[{"sku":"COFFEE-1","name":"Coffee","quantity":2,"unit_amount":450}],"currency":"usd"}'
)


def post_raw(
    stack: Stack, path: str, token: str, content: bytes | Iterator[bytes], **headers: str
) -> httpx.Response:
    """POST bytes exactly as written (a generator is sent chunked, without Content-Length)."""
    return httpx.post(
        f"{stack.api.http_url}/api/v1{path}",
        content=content,
        timeout=10,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            **headers,
        },
    )


def assert_json_refusal(response: httpx.Response, status: int, *named: str) -> None:
    """`status`, as a JSON body (the one a client can read) that mentions each of `named`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = json.loads(response.content.decode("utf-8"))  # strict UTF-8: no surrogate got out
    assert "detail" in body
    for name in named:
        assert name in response.text, f"{name!r} not named in {response.text}"


def jobs_of(stack: Stack, user: str) -> int:
    engine = build_engine(stack.database_url)
    with engine.connect() as connection:
        count = connection.scalar(select(func.count()).select_from(Job).where(Job.user_id == user))
    engine.dispose()
    return int(count or 0)


# Defect 3: 413 was `Content Too Large` as text/plain whenever the client sent Content-Length.


@pytest.mark.parametrize(
    "path", ["/orders", "/payments", "/metrics/recalculate", "/webhooks/stripe"]
)
def test_a_body_over_the_limit_gets_a_json_413_naming_the_limit(
    stack: Stack, token: Callable[..., str], path: str
) -> None:
    body = b'{"pad": "' + b"x" * TWO_MIB + b'"}'
    response = post_raw(stack, path, token(unique("u"), "b1"), body)
    assert_json_refusal(response, 413, str(LIMIT))


def test_a_chunked_body_over_the_limit_gets_the_same_json_413(
    stack: Stack, token: Callable[..., str]
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"pad": "'
        for _ in range(32):
            yield b"x" * (64 * 1024)
        yield b'"}'

    response = post_raw(stack, "/orders", token(unique("u")), chunks())
    assert_json_refusal(response, 413, str(LIMIT))


def test_a_body_just_under_the_limit_is_still_read(stack: Stack, token: Callable[..., str]) -> None:
    padded = ORDER[:-1] + ',"pad":"' + "x" * (LIMIT - len(ORDER) - 20) + '"}'
    assert len(padded) <= LIMIT
    response = post_raw(stack, "/orders", token(unique("u")), padded.encode())
    assert_json_refusal(response, 422, "pad")  # read and validated: an unknown field


# Defect 4: NaN, Infinity, 1e400 and lone surrogates were echoed as `input` in the 422, which
# then could not be encoded (500); a NUL passed validation, and PostgreSQL cannot store it.


def order_with(**raw: str) -> str:
    """The COFFEE order with some item fields replaced by raw JSON text."""
    item = {"sku": '"COFFEE-1"', "name": '"Coffee"', "quantity": "2", "unit_amount": "450"}
    item.update(raw)
    fields = ",".join(f'"{key}":{value}' for key, value in item.items())
    return '{"items":[{' + fields + '}],"currency":"usd"}'


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/orders", order_with(quantity="NaN"), "quantity"),
        ("/orders", order_with(quantity="Infinity"), "quantity"),
        ("/orders", order_with(quantity="-Infinity"), "quantity"),
        ("/orders", order_with(quantity="1e400"), "quantity"),
        ("/orders", order_with(unit_amount="NaN"), "unit_amount"),
        ("/orders", order_with(unit_amount="-1e400"), "unit_amount"),
        ("/orders", order_with(name=r'"\ud800"'), "name"),
        ("/orders", order_with(name=r'"Cof\udfffee"'), "name"),
        ("/orders", order_with(name=r'"Cof\u0000fee"'), "name"),
        ("/orders", order_with(sku=r'"\ud800"'), "sku"),
        ("/orders", order_with(colour="NaN"), "colour"),
        ("/orders", order_with(**{r"\ud800": "1"}), "items"),  # a key: the item is named
        ("/orders", ORDER[:-1] + ',"currency":"\\ud800"}', "currency"),
        ("/payments", '{"order_id":"1","payment_method":"pm_card_visa","amount":NaN}', "amount"),
        ("/payments", r'{"order_id":"\ud800","payment_method":"pm_card_visa"}', "order_id"),
        (
            "/payments",
            r'{"order_id":"1","payment_method":"pm_card_visa","success_url":"/ok\ud800"}',
            "success_url",
        ),
        ("/metrics/recalculate", '{"business_id":NaN}', "business_id"),
        ("/metrics/recalculate", '{"business_id":Infinity}', "business_id"),
    ],
)
def test_odd_numbers_and_strings_get_a_422_naming_the_field(
    stack: Stack, token: Callable[..., str], path: str, body: str, field: str
) -> None:
    user = unique("u")
    response = post_raw(stack, path, token(user, "b1"), body.encode())
    assert_json_refusal(response, 422, field)
    assert jobs_of(stack, user) == 0  # no row, hence no Celery message either


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe\x00{",  # not UTF-8
        b"[" * 50_000,  # nested deeper than any parser recurses
        order_with(quantity="1" * 5_000).encode(),  # an integer longer than int() reads
    ],
    ids=["not-utf-8", "deep", "long-integer"],
)
def test_a_body_that_cannot_be_parsed_gets_a_json_4xx(
    stack: Stack, token: Callable[..., str], body: bytes
) -> None:
    user = unique("u")
    response = post_raw(stack, "/orders", token(user), body)
    assert response.status_code in (400, 422), response.text
    assert_json_refusal(response, response.status_code)
    assert jobs_of(stack, user) == 0


def test_ordinary_non_ascii_text_is_still_accepted(stack: Stack, token: Callable[..., str]) -> None:
    user = unique("u")
    body = order_with(name='"Caf\\u00e9 \\ud83d\\ude00 \u00b2"')  # é, an emoji (a pair), ²
    response = post_raw(stack, "/orders", token(user), body.encode())
    assert response.status_code == 202, response.text
    assert jobs_of(stack, user) == 1


def post_signed(stack: Stack, payload: bytes) -> httpx.Response:
    return httpx.post(
        f"{stack.api.http_url}/api/v1/webhooks/stripe",
        content=payload,
        timeout=10,
        headers={
            "Content-Type": "application/json",
            "Stripe-Signature": sign(payload, TEST_WEBHOOK_SECRET, int(time.time())),
        },
    )


def event_text(intent: str) -> bytes:
    """A payment_intent.succeeded event around `intent`, raw JSON text."""
    return (
        f'{{"id":"evt_{secrets.token_hex(8)}","object":"event",'
        f'"type":"payment_intent.succeeded","created":{int(time.time())},'
        f'"data":{{"object":{intent}}}}}'
    ).encode()


@pytest.mark.parametrize(
    "payload",
    [
        event_text('{"id":"pi_x","amount":NaN}'),
        event_text('{"id":"pi_x","amount":1e400}'),
        b'{"id":{"nested":true},"type":"payment_intent.succeeded"}',
        b'{"id":"evt_' + b"x" * 300 + b'","type":"payment_intent.succeeded"}',
        b'{"id":"evt_1","type":["payment_intent.succeeded"]}',
        b'{"id":"evt_\\u0000","type":"payment_intent.succeeded"}',
    ],
)
def test_a_signed_webhook_that_is_not_a_stripe_event_gets_a_json_400(
    stack: Stack, payload: bytes
) -> None:
    assert_json_refusal(post_signed(stack, payload), 400)


# Defect 5: `str.isdigit()` accepts "²" and "③", which `int()` then refuses (500); PostgreSQL
# refused an id past its INTEGER key, and a NUL in a job id (500).


@pytest.mark.parametrize(
    "path",
    [
        "/orders/\u00b2",  # ²
        "/orders/\u2462",  # ③
        "/orders/\u0661\u0662",  # Arabic-Indic 12: int() reads it, but it is no order id
        "/orders/%00",
        "/orders/2147483648",  # past the INTEGER key, which PostgreSQL refuses as a parameter
        "/orders/999999999999999999",
        "/orders/99999999999999999999999999",
        "/jobs/\u00b2",
        "/jobs/%00",
        "/jobs/00000000-0000-0000-0000-00000000000%00",
    ],
)
def test_a_path_id_that_is_no_id_gets_a_json_404(
    stack: Stack, token: Callable[..., str], path: str
) -> None:
    response = stack.get(path, token(unique("u")))
    assert_json_refusal(response, 404, "not found")


def test_a_payment_of_a_non_ascii_order_id_gets_a_422_naming_it(
    stack: Stack, token: Callable[..., str]
) -> None:
    body = {"order_id": "\u00b2", "payment_method": "pm_card_visa"}
    assert_json_refusal(stack.post("/payments", token(unique("u")), body), 422, "order_id")


def test_a_signed_webhook_naming_a_non_ascii_payment_id_is_received(stack: Stack) -> None:
    """The payment id in an intent's metadata (domain/webhooks.py) is looked up only
    when it is plain digits that fit the key."""
    for payment_id in ("\u00b2", "\u2462", "2147483648", "9" * 18, "9" * 5000):
        intent = json.dumps(
            {"id": f"pi_{secrets.token_hex(6)}", "metadata": {"payment_id": payment_id}}
        )
        response = post_signed(stack, event_text(intent))
        assert response.status_code == 200, response.text
        assert response.json() == {"received": True, "duplicate": False}


@pytest.mark.parametrize("limit", ["\u00b2", "\u0661\u0662", "NaN", "1e400", "%00"])
def test_a_list_limit_that_is_no_number_gets_a_422_naming_it(
    stack: Stack, token: Callable[..., str], limit: str
) -> None:
    assert_json_refusal(stack.get(f"/orders?limit={limit}", token(unique("u"))), 422, "limit")


def test_a_refused_cors_preflight_is_json_too(stack: Stack) -> None:
    response = httpx.options(
        f"{stack.api.http_url}/api/v1/orders",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "DELETE"},
        timeout=10,
    )
    assert_json_refusal(response, 400, "method")
