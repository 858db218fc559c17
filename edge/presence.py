"""This edge's share of presence: its connections counted per user (and per business member),
admitted against the per-user cap and the user's revocation mark, given back when they close,
and kept alive by a heartbeat. What the counts mean in the broker, and why the cap holds
across edges, is told in `realtime.broker.presence_calls`.

Counts change on every connect and close; they are written by a flusher (one write for
everything that changed meanwhile), and all of them again every PRESENCE_TTL_SECONDS / 3, so
the users of an edge that dies leave presence within PRESENCE_TTL_SECONDS. Each write reads
the revocation marks of the users it writes: a connection that missed a revocation's
announcement is closed by the next heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Iterable

from core.security import Identity, issued_before
from realtime.broker import Admission, Entry, PresenceStore, Stamp

logger = logging.getLogger(__name__)

RETRACT_TIMEOUT_SECONDS = 2.0  # an edge that stops gives its entries up for this long at most

OnRevoked = Callable[[str, int], object]  # (user id, mark): close the user's older sessions

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class Turns:
    """One at a time per key: a lock per key, dropped once nobody holds it or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[key]


def new_edge_id() -> str:
    """A readable id unique to this process: host, pid and a random part."""
    host = _UNSAFE.sub("-", socket.gethostname())[:40] or "edge"
    return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"


class Presence:
    """This edge's connections in the shared presence: admitted by `enter`, given back by
    `leave`, and kept alive by a heartbeat."""

    def __init__(
        self,
        store: PresenceStore,
        *,
        ttl_seconds: float,
        max_per_user: int,
        on_revoked: OnRevoked,
        edge_id: str | None = None,
    ) -> None:
        self.edge = edge_id or new_edge_id()
        self._store = store
        self._ttl_ms = int(ttl_seconds * 1000)
        self._interval = ttl_seconds / 3
        self._cap = max_per_user
        self._on_revoked = on_revoked
        self._counts: dict[Entry, int] = {}
        self._dirty: set[Entry] = set()  # changed since last written
        self._entering: set[Entry] = set()  # users (and tabs) with a connect being admitted
        self._turns = Turns()
        self._seq = itertools.count(1)
        self._flusher: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        self._heartbeat = asyncio.get_running_loop().create_task(
            self._beat(), name="presence-heartbeat"
        )
        logger.info(
            "presence started", extra={"edge": self.edge, "ttl_ms": self._ttl_ms, "cap": self._cap}
        )

    async def stop(self) -> None:
        """Stop the heartbeat and give up every entry (written as 0, in one pass)."""
        self._stopped = True
        for task in (self._heartbeat, self._flusher):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        entries = {entry: 0 for entry in self._counts}
        self._counts.clear()
        self._dirty.clear()
        if entries:
            try:
                async with asyncio.timeout(RETRACT_TIMEOUT_SECONDS):
                    await self._write(entries)
            except Exception as error:
                logger.warning(
                    "presence not retracted; it expires by itself",
                    extra={"edge": self.edge, "entries": len(entries), "error": repr(error)},
                )

    async def enter(self, identity: Identity, client: str | None = None) -> Admission:
        """Count a new connection of `identity` (opened by the browser tab `client`), unless
        its tokens are revoked or the user is at the cap. Broker errors propagate (with
        nothing counted).

        A user's connects on this edge are admitted one at a time, each against the
        connections already admitted, and no other write of the user's count goes out while
        one is in flight: a connect that ends up refused is never in presence, so it can
        never make another edge refuse a connect the cap had room for."""
        if self._stopped:
            raise ConnectionError("the edge is stopping")
        user = identity.user_id
        written = [Entry(user)] if client is None else [Entry(user), Entry(user, tab=client)]
        async with self._turns.turn(user):
            counts = [self._counts.get(entry, 0) + 1 for entry in written]
            tab = None if client is None else (client, counts[1])
            self._entering.update(written)
            try:
                admission = await self._store.enter(
                    user, identity.issued_at, counts[0], self._cap, self._stamp(), tab
                )
                if admission is Admission.ADMITTED:  # the script wrote `counts`; if a socket
                    for entry in written:  # closed since, its entry is dirty
                        self._counts[entry] = self._counts.get(entry, 0) + 1
            except BaseException:
                self._dirty.update(written)  # the script may have run: write the true counts
                raise
            finally:
                self._entering.difference_update(written)
                self._flush_soon()
        if admission is Admission.ADMITTED and identity.business_id is not None:
            self._change(Entry(user, business=identity.business_id), +1)
        return admission

    def leave(self, identity: Identity, client: str | None = None) -> None:
        """An admitted connection closed: its slot is given back within a round trip."""
        if self._stopped:
            return
        self._change(Entry(identity.user_id), -1)
        if client is not None:
            self._change(Entry(identity.user_id, tab=client), -1)
        if identity.business_id is not None:
            self._change(Entry(identity.user_id, business=identity.business_id), -1)

    async def revoked(self, identity: Identity) -> bool:
        """Whether the user's revocation mark refuses this identity's token (a renewal, a
        ticket's purchase)."""
        mark = await self._store.revocation_mark(identity.user_id)
        return mark is not None and issued_before(identity, mark)

    # -- writing --------------------------------------------------------------------------

    def _change(self, entry: Entry, delta: int) -> None:
        self._counts[entry] = max(0, self._counts.get(entry, 0) + delta)
        self._dirty.add(entry)
        self._flush_soon()

    def _flush_soon(self) -> None:
        if self._flusher is None and not self._stopped and self._dirty - self._entering:
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush(), name="presence-flush"
            )

    async def _flush(self) -> None:
        """Write what changed, batched: whatever changes while a write is in flight goes in
        the next one. A user with a connect in flight is written once it is answered."""
        try:
            while not self._stopped and (ready := self._dirty - self._entering):
                entries = self._take(ready)
                self._dirty -= ready
                try:
                    await self._write(entries)
                except Exception as error:  # Redis errors, and redis-py's cluster ones
                    self._dirty.update(entries)
                    logger.warning(
                        "presence write failed; retrying",
                        extra={"edge": self.edge, "entries": len(entries), "error": repr(error)},
                    )
                    await asyncio.sleep(min(self._interval, 1.0))
        finally:
            self._flusher = None

    def _take(self, entries: Iterable[Entry]) -> dict[Entry, int]:
        """The counts of `entries` now; a count of 0 is forgotten once it is taken."""
        taken = {entry: self._counts.get(entry, 0) for entry in entries}
        for entry, count in taken.items():
            if count == 0:
                self._counts.pop(entry, None)
        return taken

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self._dirty |= self._entering  # written once their connects are answered
            entries = self._take(self._counts.keys() - self._entering)
            started = asyncio.get_running_loop().time()
            try:
                await self._write(entries)
            except Exception as error:  # Redis errors, and redis-py's cluster ones
                logger.warning(
                    "presence heartbeat failed",
                    extra={"edge": self.edge, "entries": len(entries), "error": repr(error)},
                )
                continue
            elapsed = asyncio.get_running_loop().time() - started
            logger.debug(
                "presence heartbeat",
                extra={"edge": self.edge, "entries": len(entries), "ms": round(elapsed * 1e3, 1)},
            )

    def _stamp(self) -> Stamp:
        return Stamp(self.edge, next(self._seq), self._ttl_ms)

    async def _write(self, entries: dict[Entry, int]) -> None:
        """Write `entries`; hand the revocation marks the writes read to `on_revoked`."""
        marks = await self._store.put(entries, self._stamp())
        for user_id, mark in marks:
            self._on_revoked(user_id, mark)
