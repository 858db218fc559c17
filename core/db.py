"""The database engine and sessions, shared by the API and the workers.

One engine per process, built on first use from DATABASE_URL: a SQLite file by default
(WAL, foreign keys, a busy timeout so a worker and the API can write concurrently),
PostgreSQL by URL. Celery's prefork children must not share the parent's connections, so
`dispose_after_fork()` is called in each child. `violates()` tells which unique index a failed
write broke, on either database, so a lost race can be answered for what it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Index, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.config import get_settings


def build_engine(url: str) -> Engine:
    """An engine configured for `url` (SQLite pragmas, pre-ping for servers)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # WAL's recommended durability: a commit survives the process (a worker killed
            # mid-job), and waits for no fsync; only a power cut may lose the last ones.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    if parsed.drivername in ("postgresql", "postgres"):
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    return build_engine(get_settings().database_url)


@lru_cache(maxsize=1)
def _session_factory() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = _session_factory()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def new_session() -> Session:
    return _session_factory()()


def dispose_after_fork() -> None:
    """Drop connections inherited from a parent process (Celery prefork children)."""
    if get_engine.cache_info().currsize:
        get_engine().dispose(close=False)


def violates(error: IntegrityError, index: Index) -> bool:
    """Whether `error` is a write refused by the unique `index`.

    PostgreSQL names the index (psycopg's `diag.constraint_name`); SQLite names only its
    columns ("UNIQUE constraint failed: payments.order_id"), which is as precise while no
    two unique indexes of a table cover the same columns.
    """
    reported = getattr(getattr(error.orig, "diag", None), "constraint_name", None)
    if reported is not None:
        return bool(reported == index.name)
    table = index.table
    if table is None:
        return False
    columns = ", ".join(f"{table.name}.{column.name}" for column in index.columns)
    return str(error.orig) == f"UNIQUE constraint failed: {columns}"
