"""A job whose message cannot reach the broker is not left behind: the API answers 503, and
the job's row and the rows that came with it (a payment) are gone, so a retry starts clean."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from cli.local_redis import LocalRedis, free_port
from core.models import Job, Order, Payment
from tests.harness import ServerProcess, base_env, unique
from tests.stack import COFFEE


@pytest.fixture(scope="module")
def api_without_broker(
    redis_server: LocalRedis, database_url: str, artifacts: Path
) -> Iterator[ServerProcess]:
    """The job API with its broker on a port nothing listens on."""
    port = free_port()
    env = base_env(
        redis_server.url,
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0",
    )
    api = ServerProcess("api.main:app", port, env, artifacts / f"api-nobroker-{port}.log")
    api.start()
    yield api
    api.stop()


def counts(database_url: str, user: str) -> tuple[int, int]:
    """The user's jobs and payments."""
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            jobs = session.scalar(select(func.count()).where(Job.user_id == user))
            payments = session.scalar(select(func.count()).where(Payment.user_id == user))
            return int(jobs or 0), int(payments or 0)
    finally:
        engine.dispose()


def an_order_of(database_url: str, user: str) -> int:
    """An order the user placed earlier (its job done), written straight to the database."""
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            job = Job(
                id=str(uuid.uuid4()),
                kind="order",
                user_id=user,
                status="succeeded",
                request=COFFEE,
                request_hash="0" * 64,
            )
            order = Order(job_id=job.id, user_id=user, currency="usd", total_amount=900)
            session.add_all([job, order])
            session.commit()
            return order.id
    finally:
        engine.dispose()


def post(api: ServerProcess, path: str, token: str, body: object) -> httpx.Response:
    return httpx.post(
        f"{api.http_url}/api/v1{path}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_an_order_that_cannot_be_enqueued_is_refused_503_and_leaves_no_job(
    api_without_broker: ServerProcess, database_url: str, token: Callable[..., str]
) -> None:
    user = unique("u")
    response = post(api_without_broker, "/orders", token(user), COFFEE)
    assert response.status_code == 503
    assert response.json() == {"detail": "the job queue is unavailable; try again"}
    assert counts(database_url, user) == (0, 0)


def test_a_payment_that_cannot_be_enqueued_takes_its_payment_row_with_it(
    api_without_broker: ServerProcess, database_url: str, token: Callable[..., str]
) -> None:
    user = unique("u")
    order_id = an_order_of(database_url, user)
    body = {"order_id": str(order_id), "payment_method": "pm_card_visa"}
    response = post(api_without_broker, "/payments", token(user), body)
    assert response.status_code == 503
    assert response.json() == {"detail": "the job queue is unavailable; try again"}
    assert counts(database_url, user) == (1, 0)  # the order's own job, and no payment
    # Nothing is left in flight: a second try is refused for the queue, not as a conflict.
    assert post(api_without_broker, "/payments", token(user), body).status_code == 503
