"""The domain functions behind the tasks, on SQLite and PostgreSQL, without Celery."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.db import build_engine
from core.models import Job, Order, Payment
from domain import jobs, metrics, orders, payments, reliability, webhooks


@pytest.fixture(scope="module")
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = build_engine(database_url)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def new_job(
    session: Session, kind: str = "order", business: str | None = None, **request: Any
) -> Job:
    body = request or {
        "items": [
            {"sku": "A", "name": "Apple", "quantity": 3, "unit_amount": 120},
            {"sku": "B", "name": "Bread", "quantity": 1, "unit_amount": 450},
        ],
        "currency": "eur",
    }
    job = Job(
        id=str(uuid.uuid4()),
        kind=kind,
        user_id="u1",
        business_id=business,
        status="queued",
        request=body,
        request_hash="h",
        deliveries=0,
        notified=False,
    )
    session.add(job)
    session.commit()
    return job


def test_an_order_is_created_once_however_often_its_job_runs(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        job = new_job(session)
    for _ in range(3):
        with sessions() as session:
            created = orders.create_order(session, job.id)
            session.commit()
    with sessions() as session:
        assert session.scalar(select(func.count()).where(Order.job_id == job.id)) == 1
        order = session.get(Order, created.id)
        assert order is not None
        assert (order.total_amount, order.currency) == (3 * 120 + 450, "eur")
        assert [(i.sku, i.quantity) for i in order.items] == [("A", 3), ("B", 1)]


def test_a_lock_reads_the_job_as_it_is_now_not_as_the_session_last_saw_it(
    sessions: sessionmaker[Session],
) -> None:
    """A session that read a job without a lock (a cancel's owner check, a batch's `stopping`)
    and locks it later must see what was committed meanwhile, or it writes over it."""
    with sessions() as session:
        job = new_job(session)
    with sessions() as early:
        seen = early.get(Job, job.id)  # held, as a route holds the job it checked
        assert seen is not None
        early.commit()  # the session keeps it past its transaction (expire_on_commit=False)
        with sessions() as other:
            jobs.begin(other, job.id, 45)
            other.commit()
        assert jobs.begin(early, job.id, 45).attempt == 2  # not a second first delivery
        assert seen.deliveries == 2
        early.commit()
    with sessions() as session:
        found = session.get(Job, job.id)
        assert found is not None
        assert found.deliveries == 2


def test_a_job_delivered_too_often_is_failed_for_good(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        job = new_job(session)
    for _ in range(jobs.MAX_DELIVERIES):
        with sessions() as session:
            assert jobs.begin(session, job.id, 45).status == "running"
            session.commit()
    with sessions() as session:
        final = jobs.begin(session, job.id, 45)
        session.commit()
    assert final.status == "failed"
    assert "gave up" in (final.error or "")


def _order_with_payment(session: Session, *, status: str = "pending") -> Payment:
    job = new_job(session, "payment")
    order = Order(
        job_id=new_job(session).id, user_id="u1", business_id="b1", currency="usd", total_amount=500
    )
    session.add(order)
    session.flush()
    payment = Payment(
        job_id=job.id,
        order_id=order.id,
        user_id="u1",
        business_id="b1",
        amount=500,
        currency="usd",
        payment_method="pm_card_visa",
        success_url="/orders",
        status=status,
    )
    session.add(payment)
    session.commit()
    return payment


def test_a_payment_state_only_moves_forward(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        payment = _order_with_payment(session)
        assert payments.advance(payment, "processing")
        assert payments.mark_paid(session, payment)
        assert not payments.advance(payment, "failed")
        assert not payments.advance(payment, "processing")
        assert payment.status == "succeeded"
        order = session.get(Order, payment.order_id)
        assert order is not None
        assert order.status == "paid"


def test_prepare_fixes_the_idempotency_key_once(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        payment = _order_with_payment(session)
    with sessions() as session:
        first = payments.prepare(session, payment.job_id)
        session.commit()
    with sessions() as session:
        again = payments.prepare(session, payment.job_id)
        session.commit()
    assert first.idempotency_key == again.idempotency_key == f"insight-payment-{payment.job_id}"
    assert again.status == "processing"


def test_a_webhook_event_is_applied_once_and_finds_the_payment_by_metadata(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        payment = _order_with_payment(session, status="processing")
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "payment_intent.succeeded",
        "data": {
            "object": {"id": f"pi_{uuid.uuid4().hex}", "metadata": {"payment_id": str(payment.id)}}
        },
    }
    with sessions() as session:
        first, change = webhooks.apply_event(session, event)
    with sessions() as session:
        again, no_change = webhooks.apply_event(session, event)
    assert (first, again, no_change) == (True, False, None)
    assert change is not None
    assert (change.payment_id, change.status) == (payment.id, "succeeded")
    with sessions() as session:
        stored = session.get(Payment, payment.id)
        assert stored is not None
        assert stored.stripe_payment_intent_id == event["data"]["object"]["id"]  # type: ignore[index]


def test_metrics_are_computed_per_window_by_the_database(sessions: sessionmaker[Session]) -> None:
    business = f"b-{uuid.uuid4().hex[:8]}"
    now = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
    with sessions() as session:

        def order(days_ago: float, total: int, paid: bool, payment_status: str | None) -> None:
            created = now - timedelta(days=days_ago)
            row = Order(
                job_id=new_job(session).id,
                user_id="u1",
                business_id=business,
                currency="usd",
                total_amount=total,
                status="paid" if paid else "created",
                created_at=created,
            )
            session.add(row)
            session.flush()
            if payment_status:
                session.add(
                    Payment(
                        job_id=new_job(session, "payment").id,
                        order_id=row.id,
                        user_id="u1",
                        business_id=business,
                        amount=total,
                        currency="usd",
                        payment_method="pm",
                        success_url="/",
                        status=payment_status,
                        created_at=created,
                    )
                )

        order(0.1, 1000, True, "succeeded")  # today
        order(0.2, 3000, False, "failed")  # today, declined
        order(3, 2000, True, "succeeded")  # this week
        order(20, 5000, True, "succeeded")  # this month
        order(45, 9999, True, "succeeded")  # too old for any window
        session.commit()
        figures = metrics.business_metrics(session, business, now)
        assert metrics.active_businesses(session, now).count(business) == 1
    assert figures["today"] == {
        "orders": 2,
        "paid_orders": 1,
        "revenue": {"usd": 1000},
        "average_order_value": {"usd": 1000},
        "payment_success_rate": 0.5,
    }
    assert figures["7d"]["orders"] == 3
    assert figures["7d"]["revenue"] == {"usd": 3000}
    assert figures["7d"]["average_order_value"] == {"usd": 1500}
    assert figures["30d"]["orders"] == 4
    assert figures["30d"]["revenue"] == {"usd": 8000}
    assert figures["30d"]["payment_success_rate"] == 0.75


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"task_acks_late": False}, "task_acks_late"),
        ({"task_reject_on_worker_lost": False}, "reject_on_worker_lost"),
        ({"worker_prefetch_multiplier": 4}, "prefetch"),
        ({"accept_content": ["json", "pickle"]}, "JSON"),
        ({"broker_transport_options": {"visibility_timeout": 60}}, "visibility_timeout"),
    ],
)
def test_the_startup_check_refuses_inconsistent_celery_settings(
    change: dict[str, Any], complaint: str
) -> None:
    good = reliability.celery_settings("redis://unused")
    reliability.check(SimpleNamespace(**good))  # the shipped settings pass
    with pytest.raises(reliability.InconsistentSettings, match=complaint):
        reliability.check(SimpleNamespace(**{**good, **change}))
