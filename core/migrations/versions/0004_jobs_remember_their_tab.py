"""jobs remember the browser tab that started them

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 01:30:00.000000

A job submitted with the `Insight-Client` header (a tab's id, docs/jobs.md, "Jobs drive the
page") sends its redirect and its modal to that tab only: the job keeps the id. Jobs made
before have none, and reach every tab as they always did.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("client", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_column("client")
