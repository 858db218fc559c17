"""a job's lifecycle: deadline (the sweep of lost jobs), cancel, batches

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08 10:00:00.000000

A running job has a deadline past which the sweep calls it lost; a cancel is asked for on the
row (every worker and the sweep read it there) and a job that passed its point of no return
says so; the orders of an import are jobs of their own that name their batch (docs/jobs.md).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("parent_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("irrevocable", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.create_foreign_key("fk_jobs_parent_id", "jobs", ["parent_id"], ["id"])
        batch_op.create_index("ix_jobs_parent_id", ["parent_id"])
        batch_op.create_index("ix_jobs_deadline_at", ["deadline_at"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_index("ix_jobs_deadline_at")
        batch_op.drop_index("ix_jobs_parent_id")
        batch_op.drop_constraint("fk_jobs_parent_id", type_="foreignkey")
        for column in ("irrevocable", "cancel_requested_at", "deadline_at", "started_at"):
            batch_op.drop_column(column)
        batch_op.drop_column("parent_id")
