"""UI events that wait for a SQLAlchemy transaction: `UIManager.for_user(u).after_commit(s)`.

Announcing a row before it is committed is a classic bug: the page reacts to the toast, asks
the API, and the row is not there yet (or never will be, if the transaction rolls back).
Hotwire's `after_create_commit` and Laravel's `afterCommit` exist for it; this is Insight's.

A call on the manager that `after_commit(session)` returns validates and encodes the event at
once (a bad event is still an exception in the caller) and queues it on the session. Each
queued event belongs to the innermost transaction open when it was queued: the session's
root transaction or a SAVEPOINT (`begin_nested()`).

- A SAVEPOINT that is released hands its events to its parent; one that is rolled back drops
  exactly the events queued inside it (and in the savepoints it contained).
- When the root transaction commits, its events are published in the order they were queued,
  after the database COMMIT and after SQLAlchemy has finished closing the transaction.
- When it ends any other way (rollback, `close()` without commit, a failed COMMIT), its events
  are dropped.

A publish that fails after the commit (Redis down) cannot undo the commit. It is logged as
`events not published after commit` with the recipients, the count left unpublished and their
idempotency keys, and the Redis error is raised out of `session.commit()` (not wrapped: a
Celery task's `autoretry_for=(redis.ConnectionError, ...)` still matches it). The events after
the failed one are not attempted, so nothing is published out of order. The remedy is to
announce again from the committed state: publish with idempotency keys, and a repeat of the
whole announcement publishes only what did not go out (what `domain.announcements` does).

Call it inside the transaction the events belong to: a session that has not begun one yet
begins it then (`session.begin()`), so a later `with session.begin():` on that session raises
SQLAlchemy's "a transaction is already begun". Synchronous sessions only: the hooks run inside
`commit()`, so with an `AsyncSession` (its `sync_session`) the publish would block the loop.

This module imports SQLAlchemy; `realtime.publisher` imports it only when `after_commit` is
called, so `import realtime` stays light for processes without a database. It knows the
manager it wraps only by the five calls they share (`realtime.manager`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Self

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from realtime.events import Event
from realtime.manager import Manager
from realtime.options import DEFAULT_OPTIONS, PublishOptions
from realtime.registry import event_registry

logger = logging.getLogger(__name__)

_QUEUE = "insight.after_commit"  # the key of a session's queue in `Session.info`


@dataclass
class _Pending:
    """One queued event: who publishes it, what, and the transaction it belongs to."""

    manager: Manager[str]  # a UIManager
    event: Event
    options: PublishOptions
    transaction: SessionTransaction

    def publish(self) -> str:
        return self.manager.publish(self.event, self.options)


@dataclass
class _Queue:
    """A session's events waiting for a commit, and its transactions whose commit has run
    (SQLAlchemy's `after_commit` comes before `after_transaction_end`, which says only that a
    transaction ended, not how)."""

    pending: list[_Pending] = field(default_factory=list)
    committed: set[SessionTransaction] = field(default_factory=set)


class AfterCommitUIManager(Manager[None]):
    """The five calls of a UIManager, each queued until `session` commits; they return None.

    The event ids are not known when the call returns; read them from the stream, or keep a
    plain UIManager for events that need no commit."""

    def __init__(self, manager: Manager[str], session: Session) -> None:
        super().__init__(manager.recipient)
        self._manager = manager
        self._session = session

    def with_context(self, **context: str) -> Self:
        """A copy whose events also carry these keys (see `UIManager.with_context`)."""
        return type(self)(self._manager.with_context(**context), self._session)

    def publish(self, event: Event, options: PublishOptions = DEFAULT_OPTIONS) -> None:
        """Queue `event` for the commit of the session's current transaction.

        The event is checked and re-read from its JSON now: it must be declared and encode (an
        error is raised here, not after the commit), and data the caller changes later does not
        change the event."""
        checked = event_registry().check(event)
        snapshot = type(event).model_validate_json(checked.model_dump_json())
        queue = _queue_of(self._session)
        transaction = _current_transaction(self._session)
        queue.pending.append(_Pending(self._manager, snapshot, options, transaction))


def pending_count(session: Session) -> int:
    """How many events are waiting for `session` to commit (for tests and diagnostics)."""
    queue = session.info.get(_QUEUE)
    return len(queue.pending) if isinstance(queue, _Queue) else 0


def _current_transaction(session: Session) -> SessionTransaction:
    """The innermost transaction an event queued now belongs to.

    A session that has not begun a transaction yet begins one: otherwise `close()` without a
    commit would end no transaction, and the events would wait for a later, unrelated one."""
    nested = session.get_nested_transaction()
    if nested is not None:
        return nested
    root = session.get_transaction()
    return root if root is not None else session.begin()


def _queue_of(session: Session) -> _Queue:
    """The session's queue, with its listeners registered on the first use by this session
    (listeners on the instance, not the Session class: other sessions pay nothing)."""
    queue = session.info.get(_QUEUE)
    if isinstance(queue, _Queue):
        return queue
    queue = _Queue()
    session.info[_QUEUE] = queue
    event.listen(session, "after_commit", _on_commit)
    event.listen(session, "after_transaction_end", _on_transaction_end)
    return queue


def _on_commit(session: Session) -> None:
    """Remember which transaction committed (a SAVEPOINT's release fires this too); publish
    later, when it has ended: raising here would leave the session half-closed."""
    queue = session.info.get(_QUEUE)
    committed = session.get_nested_transaction() or session.get_transaction()
    if isinstance(queue, _Queue) and committed is not None:
        queue.committed.add(committed)


def _on_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    queue = session.info.get(_QUEUE)
    if not isinstance(queue, _Queue):
        return
    committed = transaction in queue.committed
    queue.committed.discard(transaction)
    if transaction.nested:
        parent = transaction.parent
        while parent is not None and not parent.nested and parent.parent is not None:
            parent = parent.parent  # skip internal subtransactions: to a savepoint or the root
        if committed and parent is not None:  # released: its events now wait for the parent
            for item in queue.pending:
                if item.transaction is transaction:
                    item.transaction = parent
        else:  # rolled back to the savepoint: only its own events are dropped
            queue.pending = [p for p in queue.pending if p.transaction is not transaction]
        return
    if transaction.parent is not None:
        return  # an internal subtransaction (a flush): no event belongs to one
    due, queue.pending = queue.pending, []
    if committed:
        _publish(due)


def _publish(due: list[_Pending]) -> None:
    """Publish the committed events in order; on the first failure, log and raise."""
    for index, item in enumerate(due):
        try:
            item.publish()
        except Exception as error:
            left = due[index:]
            logger.error(
                "events not published after commit",
                extra={
                    "published": index,
                    "unpublished": len(left),
                    "recipients": sorted({str(p.manager.recipient) for p in left}),
                    "idempotency_keys": [p.options.idempotency_key for p in left],
                    "error": repr(error),
                },
            )
            error.add_note(
                f"raised after the database COMMIT: {index} of {len(due)} queued UI events "
                "were published; announce again (with idempotency keys) to publish the rest"
            )
            raise
