"""`insight migrate` from a database made by 0001 and holding rows: it reaches the schema of
core/models.py on SQLite and PostgreSQL, keeps the rows, and from then on the database itself
refuses a second live payment of an order."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData, inspect, select
from sqlalchemy.exc import IntegrityError

from core.db import build_engine, violates
from core.migrate import migrate
from core.models import IDENTITY_LENGTH, ONE_PAYMENT_PER_ORDER, Base
from tests.stack import fresh_database, require

NOW = datetime.now(UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def at_0001(request: pytest.FixtureRequest, artifacts: Path) -> Iterator[str]:
    """The URL of a database that `insight migrate` left at 0001."""
    require(request.param)
    with fresh_database(request.param, artifacts, revision="0001") as url:
        yield url


@pytest.fixture
def engine(at_0001: str) -> Iterator[Engine]:
    built = build_engine(at_0001)
    yield built
    built.dispose()


def insert(engine: Engine, table: str, **row: Any) -> Any:
    """A row, written through the table as the database has it (not as the models say); its
    primary key."""
    tables = MetaData()
    tables.reflect(engine, only=[table])
    with engine.begin() as connection:
        key = connection.execute(tables.tables[table].insert().values(**row)).inserted_primary_key
    assert key is not None
    return key[0]


def a_job(engine: Engine, user: str = "u1", **more: Any) -> str:
    job_id = str(uuid.uuid4())
    insert(
        engine,
        "jobs",
        id=job_id,
        kind="payment",
        user_id=user,
        business_id="b1",
        status="queued",
        request={},
        request_hash="h",
        deliveries=0,
        notified=False,
        created_at=NOW,
        updated_at=NOW,
        **more,
    )
    return job_id


def an_order(engine: Engine) -> int:
    return int(
        insert(
            engine,
            "orders",
            job_id=a_job(engine),
            user_id="u1",
            business_id="b1",
            currency="usd",
            total_amount=900,
            status="created",
            created_at=NOW,
        )
    )


def a_payment(engine: Engine, order_id: int, status: str) -> int:
    return int(
        insert(
            engine,
            "payments",
            job_id=a_job(engine),
            order_id=order_id,
            user_id="u1",
            business_id="b1",
            amount=900,
            currency="usd",
            payment_method="pm_card_visa",
            success_url="/orders",
            status=status,
            created_at=NOW,
            updated_at=NOW,
        )
    )


def revision_of(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def identity_lengths(engine: Engine) -> set[int | None]:
    """The lengths of the user and business id columns of every table that has them."""
    return {
        getattr(column["type"], "length", None)
        for table in ("jobs", "orders", "payments")
        for column in inspect(engine).get_columns(table)
        if column["name"] in ("user_id", "business_id")
    }


def test_an_upgrade_keeps_the_rows_and_reaches_the_models(at_0001: str, engine: Engine) -> None:
    order_id = an_order(engine)
    a_payment(engine, order_id, "failed")
    a_payment(engine, order_id, "succeeded")

    migrate(at_0001)

    assert revision_of(engine) == "0004"
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        if engine.dialect.name == "sqlite":  # its tables were rebuilt with foreign keys off
            assert connection.exec_driver_sql("PRAGMA foreign_key_check").all() == []
        statuses = connection.scalars(
            select(Base.metadata.tables["payments"].c.status).order_by("id")
        ).all()
    assert statuses == ["failed", "succeeded"]
    assert identity_lengths(engine) == {IDENTITY_LENGTH}
    a_job(engine, user="u" * IDENTITY_LENGTH)  # PostgreSQL refused it at 0001


def test_after_the_upgrade_the_database_refuses_a_second_live_payment_of_an_order(
    at_0001: str, engine: Engine
) -> None:
    order_id = an_order(engine)
    migrate(at_0001)
    a_payment(engine, order_id, "pending")

    for live in ("pending", "processing", "succeeded"):
        with pytest.raises(IntegrityError) as refused:
            a_payment(engine, order_id, live)
        assert violates(refused.value, ONE_PAYMENT_PER_ORDER)
    a_payment(engine, order_id, "failed")
    a_payment(engine, an_order(engine), "pending")  # another order's is another matter


def test_a_refusal_by_another_constraint_is_not_taken_for_a_second_payment(
    at_0001: str, engine: Engine
) -> None:
    migrate(at_0001)
    a_job(engine, idempotency_key="k")

    with pytest.raises(IntegrityError) as refused:
        a_job(engine, idempotency_key="k")
    assert not violates(refused.value, ONE_PAYMENT_PER_ORDER)


def test_a_database_that_already_paid_an_order_twice_is_left_as_it_was_and_named(
    at_0001: str, engine: Engine
) -> None:
    paid_once, paid_twice = an_order(engine), an_order(engine)
    a_payment(engine, paid_once, "succeeded")
    first, second = (
        a_payment(engine, paid_twice, "succeeded"),
        a_payment(engine, paid_twice, "pending"),
    )

    with pytest.raises(RuntimeError) as refused:
        migrate(at_0001)

    named = f"order {paid_twice}: payments {first} (succeeded), {second} (pending)."
    assert named in str(refused.value)
    assert f"order {paid_once}:" not in str(refused.value)
    assert revision_of(engine) == "0001"
    assert identity_lengths(engine) == {200}
