"""UIManager.after_commit: events that wait for a SQLAlchemy commit, on SQLite and PostgreSQL.

Everything is real: the events Redis of the test session (read through the recipient's
stream, or at a WebSocket of the shared edge) and a migrated database of each backend.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
import redis
from sqlalchemy import Engine, event, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from cli.local_redis import free_port
from core import db
from core.config import get_settings
from core.models import Job, Order
from realtime import Recipient, UIManager
from realtime.after_commit import pending_count
from realtime.eventlog import EventLog
from realtime.payloads import JobProgress
from realtime.publisher import default_event_log
from tests.figures import FIGURES
from tests.harness import Client, Edge, unique

pytestmark = pytest.mark.anyio

COFFEE_REQUEST = {
    "items": [{"sku": "COFFEE-1", "name": "Coffee", "quantity": 2, "unit_amount": 450}],
    "currency": "usd",
}


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    built = db.build_engine(database_url)
    yield built
    built.dispose()


@pytest.fixture(scope="module")
def sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def job_row(user: str, kind: str = "order") -> Job:
    return Job(
        id=str(uuid.uuid4()),
        kind=kind,
        user_id=user,
        status="queued",
        request=COFFEE_REQUEST,
        request_hash="h",
        deliveries=0,
        notified=False,
    )


def finished(job_id: str) -> JobProgress:
    return JobProgress(jobId=job_id, kind="order", status="succeeded", percent=100)


def logged(client: redis.Redis, user: str) -> list[dict[str, Any]]:
    """The events in `user`'s log, oldest first, as their JSON bodies."""
    return logged_for(client, Recipient.user(user))


def logged_for(client: redis.Redis, recipient: Recipient) -> list[dict[str, Any]]:
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(recipient.stream_key))
    return [json.loads(fields[b"f"]) for _, fields in entries]


def titles(client: redis.Redis, user: str) -> list[str]:
    return [e.get("title") or e["type"] for e in logged(client, user)]


def readable(sessions: sessionmaker[Session], job_id: str) -> bool:
    """Whether another connection sees the committed row."""
    with sessions() as other:
        return other.get(Job, job_id) is not None


def test_a_rolled_back_transaction_publishes_nothing(
    sessions: sessionmaker[Session], redis_client: redis.Redis
) -> None:
    user = unique("u")
    ui = UIManager.for_user(user)
    with sessions() as session:
        session.add(job_row(user))
        later = ui.after_commit(session)
        assert later.show_toast("Order created", "#1", "success") is None
        later.redirect("/orders")
        assert pending_count(session) == 2
        session.rollback()
        assert pending_count(session) == 0
        session.commit()  # a later transaction of the same session does not revive them
        # closing without a commit drops them too, also when nothing else was done
        ui.after_commit(session).show_toast("Closed", "never committed", "info")
    with sessions() as session:
        ui.after_commit(session).refresh()
    assert logged(redis_client, user) == []


def test_a_committed_transaction_publishes_each_event_once_in_order(
    sessions: sessionmaker[Session], redis_client: redis.Redis
) -> None:
    user = unique("u")
    with sessions() as session:
        row = job_row(user)
        session.add(row)
        later = UIManager.for_user(user).after_commit(session).with_context(jobId=row.id)
        later.update_ui(finished(row.id), idempotency_key=f"{row.id}:p")
        later.show_toast("Order created", "#1", "success", idempotency_key=f"{row.id}:t")
        later.redirect("/orders", idempotency_key=f"{row.id}:r")
        session.flush()
        assert logged(redis_client, user) == []  # flushed, not committed: nothing published
        session.commit()
        session.commit()  # an empty second commit publishes nothing again
    events = logged(redis_client, user)
    assert [e["type"] for e in events] == ["ui_update", "ui_toast", "ui_redirect"]
    assert {e["jobId"] for e in events} == {row.id}


def test_data_changed_after_the_call_does_not_change_the_event(
    sessions: sessionmaker[Session], redis_client: redis.Redis
) -> None:
    user = unique("u")
    data: dict[str, Any] = {"type": "snapshot", "items": [1]}
    with sessions() as session:
        UIManager.for_user(user).after_commit(session).update_ui(data)
        data["items"].append(2)
        with pytest.raises(ValueError, match="unknown context"):
            UIManager.for_user(user).after_commit(session).with_context(type="x")
        session.commit()
    assert [e["data"] for e in logged(redis_client, user)] == [{"type": "snapshot", "items": [1]}]


def test_a_rolled_back_savepoint_drops_only_the_events_queued_inside_it(
    sessions: sessionmaker[Session], redis_client: redis.Redis
) -> None:
    user = unique("u")
    ui = UIManager.for_user(user)
    rows = {name: job_row(user) for name in "ABCDE"}
    with sessions() as session:
        later = ui.after_commit(session)
        session.add(rows["A"])
        later.show_toast("A", "root", "info")
        savepoint = session.begin_nested()
        session.add(rows["B"])
        later.show_toast("B", "rolled back savepoint", "info")
        savepoint.rollback()
        with session.begin_nested():  # released
            session.add(rows["C"])
            later.show_toast("C", "released savepoint", "info")
            inner = session.begin_nested()
            session.add(rows["D"])
            later.show_toast("D", "rolled back inside the released one", "info")
            inner.rollback()
        session.begin_nested()  # still open at the commit, which releases it
        session.add(rows["E"])
        later.show_toast("E", "open savepoint", "info")
        assert pending_count(session) == 3
        assert logged(redis_client, user) == []
        session.commit()
    assert titles(redis_client, user) == ["A", "C", "E"]
    present = {name for name, row in rows.items() if readable(sessions, row.id)}
    assert present == {"A", "C", "E"}  # the events match the rows that were committed


async def test_the_page_gets_the_events_only_after_the_commit_and_then_finds_the_row(
    edge: Edge,
    token: Callable[..., str],
    engine: Engine,
    sessions: sessionmaker[Session],
    redis_client: redis.Redis,
) -> None:
    user = unique("u")
    client = await Client.connect(edge.ws_url, token(user))
    session = sessions()
    row = job_row(user)
    session.add(row)
    later = UIManager.for_user(user).with_context(jobId=row.id).after_commit(session)
    later.show_toast("Order created", "#1", "success")
    later.update_ui(finished(row.id))
    later.redirect("/orders")
    session.flush()
    assert await client.silent_for(0.3)
    assert not readable(sessions, row.id)

    def slow_commit(_connection: Any) -> None:
        # Holds the COMMIT back: an event published before it would reach the page while
        # the row is still invisible to every other connection.
        time.sleep(0.3)

    event.listen(engine, "commit", slow_commit)
    committing = asyncio.create_task(asyncio.to_thread(session.commit))
    try:
        first = await client.until(lambda f: f["type"].startswith("ui_"))
        row_seen_with_first_frame = readable(sessions, row.id)
        rest = await client.events(2)
    finally:
        await committing
        event.remove(engine, "commit", slow_commit)
        session.close()
    assert row_seen_with_first_frame, "the event reached the page before its row was committed"
    assert [f["type"] for f in (first, *rest)] == ["ui_toast", "ui_update", "ui_redirect"]
    assert {f["jobId"] for f in (first, *rest)} == {row.id}
    assert await client.silent_for(0.3)  # exactly once
    assert len(logged(redis_client, user)) == 3
    await client.close()


def test_redis_down_after_the_commit_raises_a_retryable_error_and_logs_it(
    sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    user = unique("u")
    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5)
    ui = UIManager(Recipient.user(user), EventLog(dead, get_settings().retention))
    with sessions() as session:
        row = job_row(user)
        session.add(row)
        later = ui.after_commit(session)
        later.show_toast("Order created", "#1", "success", idempotency_key=f"job:{row.id}:toast")
        later.redirect("/orders", idempotency_key=f"job:{row.id}:redirect")
        with caplog.at_level(logging.ERROR), pytest.raises(redis.ConnectionError) as raised:
            session.commit()
        assert "after the database COMMIT: 0 of 2" in "".join(raised.value.__notes__)
        assert session.get_transaction() is None  # the session is closed cleanly, usable
        session.rollback()
        assert session.scalar(select(Job.id).where(Job.id == row.id)) == row.id
    assert readable(sessions, row.id)  # the commit stands
    [record] = [r for r in caplog.records if r.getMessage() == "events not published after commit"]
    assert (record.published, record.unpublished) == (0, 2)  # type: ignore[attr-defined]
    assert record.recipients == [f"user:{user}"]  # type: ignore[attr-defined]
    assert record.idempotency_keys == [f"job:{row.id}:toast", f"job:{row.id}:redirect"]  # type: ignore[attr-defined]


class FailsOnce(EventLog):
    """The real log, whose append number `at` (from 0) fails once as if Redis went away."""

    def __init__(self, base: EventLog, at: int) -> None:
        super().__init__(base.client, base.retention)
        self.calls, self.at = 0, at

    def append(self, *args: Any, **kwargs: Any) -> str:
        self.calls += 1
        if self.calls - 1 == self.at:
            raise redis.ConnectionError("Redis went away")
        return super().append(*args, **kwargs)


def test_a_partial_publish_is_completed_once_by_announcing_again_with_the_same_keys(
    sessions: sessionmaker[Session], redis_client: redis.Redis
) -> None:
    user = unique("u")

    def announce(ui: UIManager, session: Session | None, job_id: str) -> None:
        target = ui if session is None else ui.after_commit(session)
        for part in ("first", "second", "third"):
            target.show_toast(part, "", "info", idempotency_key=f"job:{job_id}:{part}")

    flaky = UIManager(Recipient.user(user), FailsOnce(default_event_log(), at=1))
    with sessions() as session:
        row = job_row(user)
        session.add(row)
        announce(flaky, session, row.id)
        with pytest.raises(redis.ConnectionError):
            session.commit()
    assert titles(redis_client, user) == ["first"]  # nothing after the failure, no reordering
    announce(UIManager.for_user(user), None, row.id)  # what a retried task does
    assert titles(redis_client, user) == ["first", "second", "third"]


@pytest.fixture
def worker_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's `core.db` on the test database, as a worker's would be."""

    def forget() -> None:
        if db.get_engine.cache_info().currsize:
            db.get_engine().dispose()
        for cached in (get_settings, db.get_engine, db._session_factory):
            cached.cache_clear()

    monkeypatch.setenv("DATABASE_URL", database_url)
    forget()
    yield
    forget()


def queued_order_job(sessions: sessionmaker[Session], user: str) -> str:
    with sessions() as session:
        row = job_row(user)
        session.add(row)
        session.commit()
        return row.id


@pytest.mark.usefixtures("worker_database")
def test_an_order_job_whose_last_transaction_rolls_back_announces_no_outcome(
    sessions: sessionmaker[Session], redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from domain import outcome
    from workers.tasks import orders as order_tasks

    user = unique("u")
    job_id = queued_order_job(sessions, user)
    announce = outcome.announce

    def queue_then_fail(session: Session, job: Any) -> None:
        announce(session, job)
        assert pending_count(session) == 3  # progress 100, the order's row and the toast, waiting
        raise OperationalError("COMMIT", {}, Exception("the database went away"))

    with monkeypatch.context() as patch:
        patch.setattr(outcome, "announce", queue_then_fail)
        with pytest.raises(OperationalError):
            order_tasks.create_order(job_id)
    with sessions() as session:
        assert session.scalars(select(Order).where(Order.job_id == job_id)).all() == []
    assert [e["data"]["percent"] for e in logged(redis_client, user)] == [10]

    order_tasks.create_order(job_id)  # the retry
    order_tasks.create_order(job_id)  # a redelivery after the job was announced
    events = logged(redis_client, user)
    assert [e["type"] for e in events] == ["ui_update", "ui_update", "ui_update", "ui_toast"]
    assert [e["data"]["percent"] for e in events[:2]] == [10, 100]
    assert events[2]["data"]["type"] == "order_update"
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.status, job.notified) == ("succeeded", True)


@pytest.mark.usefixtures("worker_database")
def test_an_order_job_whose_outcome_could_not_be_published_is_announced_by_its_retry(
    sessions: sessionmaker[Session], redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    import realtime.publisher
    from workers.tasks import orders as order_tasks

    user = unique("u")
    job_id = queued_order_job(sessions, user)
    flaky = FailsOnce(default_event_log(), at=1)  # progress 10 goes out, progress 100 fails
    with monkeypatch.context() as patch:
        patch.setattr(realtime.publisher, "default_event_log", lambda: flaky)
        with pytest.raises(redis.ConnectionError):  # in TRANSIENT_ERRORS: Celery would retry
            order_tasks.create_order(job_id)
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.status, job.notified) == ("succeeded", False)  # committed, not announced
    assert [e["type"] for e in logged(redis_client, user)] == ["ui_update"]

    order_tasks.create_order(job_id)  # the retry, with Redis back
    events = logged(redis_client, user)
    assert [e["type"] for e in events] == ["ui_update", "ui_update", "ui_update", "ui_toast"]
    assert events[3]["title"] == "Order created"


@pytest.mark.usefixtures("worker_database")
def test_a_finished_metrics_job_is_announced_again_from_its_stored_figures(
    sessions: sessionmaker[Session], redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A redelivery of a metrics job that succeeded but was not announced computes nothing:
    it goes through `begin` like every job, and announces the figures the job stored."""
    from domain import metrics
    from workers.tasks import metrics as metrics_tasks

    user, business = unique("u"), unique("b")
    stored = FIGURES
    with sessions() as session:
        row = job_row(user, "metrics")
        row.business_id, row.status = business, "succeeded"
        row.result = {"business_id": business, "metrics": stored}
        session.add(row)
        session.commit()

    def computed_again(*_: Any) -> None:
        raise AssertionError("the figures of a finished job were computed again")

    monkeypatch.setattr(metrics, "business_metrics", computed_again)
    metrics_tasks.recalculate(row.id)
    metrics_tasks.recalculate(row.id)  # announced by now: nothing more
    assert [(e["data"]["percent"], e["data"]["status"]) for e in logged(redis_client, user)] == [
        (100, "succeeded")
    ]
    dashboard = logged_for(redis_client, Recipient.business(business))
    assert [e["data"] for e in dashboard] == [
        {"type": "metrics_update", "businessId": business, "metrics": stored}
    ]
    with sessions() as session:
        job = session.get(Job, row.id)
        assert job is not None
        assert (job.status, job.notified, job.deliveries) == ("succeeded", True, 2)
