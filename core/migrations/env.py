"""Alembic environment: migrates the database named by DATABASE_URL (or the URL the caller set)."""

from __future__ import annotations

from alembic import context

from core.db import build_engine
from core.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "migrate() sets sqlalchemy.url"

if context.is_offline_mode():
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = build_engine(url)
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            # Batch mode rebuilds a table by copy, drop and rename; with foreign keys enforced,
            # dropping a table that other rows refer to fails. SQLite takes this pragma only
            # outside a transaction, so it is committed before the migration's begins.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
