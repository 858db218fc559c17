"""The per-user cap at connect, whatever order the broker answers a burst of connects in.

Two edges share one presence store; every admission script is held until the test lets it
run, in a random order, so each burst meets the worst interleavings a busy Redis can make:
a refusal on one edge written while its neighbours are still in flight, the same on the
other edge, and then the neighbours checked against both. The cap is exact: a burst of
connects admits the cap, never more and never fewer (a connect refused only because of a
neighbour that was itself refused is a user locked out for no reason).
"""

from __future__ import annotations

import asyncio
import random

import pytest

from core.security import Identity
from edge.presence import Presence
from realtime.broker import Admission, Entry, Marks, Stamp
from realtime.broker.memory import MemoryBroker, MemoryPresence

pytestmark = pytest.mark.anyio

CAP = 3


class HeldPresence:
    """The in-memory presence store, with every admission held until `release_one`."""

    def __init__(self, store: MemoryPresence) -> None:
        self._store = store
        self.held: list[asyncio.Future[None]] = []

    async def enter(
        self,
        user_id: str,
        issued_at: float | None,
        count: int,
        cap: int,
        by: Stamp,
        tab: tuple[str, int] | None = None,
    ) -> Admission:
        turn = asyncio.get_running_loop().create_future()
        self.held.append(turn)
        await turn
        return await self._store.enter(user_id, issued_at, count, cap, by, tab)

    async def put(self, entries: dict[Entry, int], by: Stamp) -> Marks:
        return await self._store.put(entries, by)

    async def revocation_mark(self, user_id: str) -> int | None:
        return await self._store.revocation_mark(user_id)

    def release_one(self, rng: random.Random) -> None:
        self.held.pop(rng.randrange(len(self.held))).set_result(None)


async def settle() -> None:
    """Let every task that can run, run (nothing here waits on I/O)."""
    for _ in range(50):
        await asyncio.sleep(0)


async def burst(seed: int) -> tuple[int, int]:
    """One admitted connection on each of two edges, then two more connects on each, answered
    in an order drawn from `seed`: (connections admitted, connections counted)."""
    rng = random.Random(seed)
    memory = MemoryBroker().presence
    store = HeldPresence(memory)
    edges = [
        Presence(store, ttl_seconds=60, max_per_user=CAP, on_revoked=lambda *_: None)
        for _ in range(2)
    ]
    user = Identity(user_id="42", business_id=None, name=None, expires_at=float("inf"))

    async def connect(edge: Presence) -> Admission:
        return await edge.enter(user)

    first = [asyncio.create_task(connect(edge)) for edge in edges]
    while not all(task.done() for task in first):
        await settle()
        if store.held:
            store.release_one(rng)
    tasks = [asyncio.create_task(connect(edges[n % 2])) for n in range(4)]
    while not all(task.done() for task in tasks):
        await settle()
        if store.held:
            store.release_one(rng)
    await settle()
    admitted = sum(task.result() is Admission.ADMITTED for task in (*first, *tasks))
    return admitted, memory.connections("42")


@pytest.mark.parametrize("seed", range(40))
async def test_a_burst_of_connects_on_two_edges_admits_exactly_the_cap(seed: int) -> None:
    admitted, counted = await burst(seed)
    assert admitted == CAP
    assert counted == CAP
