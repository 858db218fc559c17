"""one payment per order; user and business ids of up to 256 characters

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 10:00:00.000000

At most one payment of an order may be pending, processing or succeeded (docs/jobs.md, "Job
API"): a partial unique index makes the database refuse the second, however the requests
interleave. A user or business id may be 1-256 characters (docs/jobs.md, "Identity"): the
columns that hold one are widened from 200.

What this revision knows is written out here rather than read from core/models.py: a
migration is the schema as it was made, whatever the models become later.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ONE_PER_ORDER = "uq_payments_one_per_order"
payments = sa.table("payments", sa.column("id"), sa.column("order_id"), sa.column("status"))
HOLDS_ITS_ORDER = payments.c.status.in_(("pending", "processing", "succeeded"))
IDENTITY_COLUMNS = {
    "jobs": ("user_id", "business_id"),
    "orders": ("user_id", "business_id"),
    "payments": ("user_id", "business_id"),
}


def upgrade() -> None:
    if not context.is_offline_mode():
        _refuse_orders_already_paid_twice()
    for table, columns in IDENTITY_COLUMNS.items():
        _resize(table, columns, sa.String(length=200), sa.String(length=256))
    op.create_index(
        ONE_PER_ORDER,
        "payments",
        ["order_id"],
        unique=True,
        sqlite_where=HOLDS_ITS_ORDER,
        postgresql_where=HOLDS_ITS_ORDER,
    )


def downgrade() -> None:
    op.drop_index(ONE_PER_ORDER, table_name="payments")
    # Refused by PostgreSQL while any id is longer than 200 characters.
    for table, columns in IDENTITY_COLUMNS.items():
        _resize(table, columns, sa.String(length=256), sa.String(length=200))


def _resize(table: str, columns: tuple[str, ...], old: sa.String, new: sa.String) -> None:
    """In place on PostgreSQL; on SQLite, batch mode rebuilds the table (copy and rename),
    its indexes and constraints with it."""
    with op.batch_alter_table(table) as batch_op:
        for column in columns:
            batch_op.alter_column(
                column,
                existing_type=old,
                type_=new,
                existing_nullable=column != "user_id",
            )


def _refuse_orders_already_paid_twice() -> None:
    """Orders that the race this revision closes already gave two live payments cannot take
    the index. Which charge stands is a decision for a person (and a refund at Stripe), not
    for a migration: stop before changing anything, and name them."""
    held_by_several = (
        sa.select(payments.c.order_id)
        .where(HOLDS_ITS_ORDER)
        .group_by(payments.c.order_id)
        .having(sa.func.count() > 1)
    )
    held_twice = op.get_bind().execute(
        sa.select(payments.c.order_id, payments.c.id, payments.c.status)
        .where(HOLDS_ITS_ORDER, payments.c.order_id.in_(held_by_several))
        .order_by(payments.c.order_id, payments.c.id)
    )
    by_order: dict[int, list[str]] = {}
    for order_id, payment_id, status in held_twice:
        by_order.setdefault(order_id, []).append(f"{payment_id} ({status})")
    if by_order:
        listed = "; ".join(f"order {o}: payments {', '.join(p)}" for o, p in by_order.items())
        raise RuntimeError(
            "cannot make one payment per order a rule while these orders have several "
            f"pending, processing or succeeded payments: {listed}. For each, let pending ones "
            "finish, refund the charges that should not stand at Stripe and set those "
            "payments' status to 'failed'; then run `insight migrate` again."
        )
