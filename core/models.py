"""The relational data: jobs, orders with their items, payments, processed webhook events.

A job row is the API's promise to the client (its status URL) and the worker's unit of
idempotency: the order and the payment it produces point back to it with a unique key, so a
redelivered task finds its earlier work instead of repeating it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from realtime.ids import MAX_ID_LENGTH

# A row id as text from outside (a URL, a body, Stripe's metadata): ASCII digits only
# (str.isdigit() also takes "²" and "③", which int() then refuses), within the INTEGER key
# (32 bits on PostgreSQL, which refuses a larger parameter).
_ROW_ID = re.compile(r"[0-9]{1,10}")
MAX_ROW_ID = 2**31 - 1
# A user or business id is whatever an identity provider issues (`realtime.ids`), and every
# column that holds one is as wide as the longest.
IDENTITY_LENGTH = MAX_ID_LENGTH

# A payment's state only moves forward along this order, whatever order events arrive in
# (domain/payments.py: advance). Here, beside the table, because the database enforces a rule
# on them (ONE_PAYMENT_PER_ORDER below).
PAYMENT_STATUSES = ("pending", "processing", "failed", "succeeded")
IN_FLIGHT = ("pending", "processing")  # a payment Stripe may still be charging
# A payment that holds its order: one in flight or succeeded. A failed one holds nothing, so
# the order can be paid again.
HOLDS_ITS_ORDER = (*IN_FLIGHT, "succeeded")


def row_id(text: object) -> int | None:
    """The integer primary key `text` names, or None if it can name no row."""
    if not isinstance(text, str) or _ROW_ID.fullmatch(text) is None:
        return None
    number = int(text)
    return number if number <= MAX_ROW_ID else None


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        datetime: DateTime(timezone=True),
    }


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("user_id", "idempotency_key", name="uq_jobs_idempotency"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str] = mapped_column(String(IDENTITY_LENGTH), index=True)
    business_id: Mapped[str | None] = mapped_column(String(IDENTITY_LENGTH))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    request: Mapped[dict[str, Any]]
    request_hash: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    correlation_id: Mapped[str | None] = mapped_column(String(100))
    # The browser tab that submitted it (`Insight-Client`): its redirect and modal go there.
    client: Mapped[str | None] = mapped_column(String(64))
    result: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    # A batch's part (an order of POST /orders/import) names its batch; it is announced
    # through the batch, never on its own.
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"), index=True)
    started_at: Mapped[datetime | None]
    # By when the job must have moved on (finished, or been delivered again): past it, and a
    # grace, the sweep calls it lost (domain/sweep.py).
    deadline_at: Mapped[datetime | None] = mapped_column(index=True)
    cancel_requested_at: Mapped[datetime | None]
    # Set once the job passed its point of no return: a cancel then lets it end as it would.
    irrevocable: Mapped[bool] = mapped_column(default=False)
    # Set once the outcome was published to the user's page: a redelivered task that finds a
    # finished job publishes only if this is still false (see domain/jobs.py).
    notified: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), unique=True)
    user_id: Mapped[str] = mapped_column(String(IDENTITY_LENGTH), index=True)
    business_id: Mapped[str | None] = mapped_column(String(IDENTITY_LENGTH), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    total_amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="created")  # created, paid
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    items: Mapped[list[OrderItem]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="OrderItem.id"
    )


class OrderItem(Base):
    __tablename__ = "order_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    sku: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(300))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_amount: Mapped[int] = mapped_column(BigInteger)
    order: Mapped[Order] = relationship(back_populates="items")


class Payment(Base):
    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    user_id: Mapped[str] = mapped_column(String(IDENTITY_LENGTH), index=True)
    business_id: Mapped[str | None] = mapped_column(String(IDENTITY_LENGTH), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    payment_method: Mapped[str] = mapped_column(String(100))
    success_url: Mapped[str] = mapped_column(String(2048))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # Stored before the first call to Stripe, so every retry of the job reuses it.
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# At most one payment holds an order, whatever the concurrency (docs/jobs.md, "Job API"). The API
# checks first, for a clear 409 in the common case; this index is the guarantee, since two
# requests can both pass that check before either commits.
ONE_PAYMENT_PER_ORDER = Index(
    "uq_payments_one_per_order",
    Payment.order_id,
    unique=True,
    sqlite_where=Payment.status.in_(HOLDS_ITS_ORDER),
    postgresql_where=Payment.status.in_(HOLDS_ITS_ORDER),
)


class ProcessedWebhookEvent(Base):
    __tablename__ = "processed_webhook_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
