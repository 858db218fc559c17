"""The drivers' client of each cluster master (`realtime.broker.drivers`), and what becomes of
one when its node is a master no more.

A long-lived producer sees masters come and go: a failover demotes one, an operator replaces
a node (a new address). Kept for the life of the process, a client per node that was ever a
master would hold a socket to each, one more per replaced node. So whenever the topology
shows a change (a call rerouted by MOVED or a lost connection, a master used for the first
time), the clients of nodes that the cluster client no longer counts as masters are retired:
no call takes them from then on, and they are closed at a later change, once RETIRE_SECONDS
have passed (no call still waits on one by then: their sockets time out in 5 s), or when the
driver closes. The cluster client learns a failover slot by slot from MOVED replies, and reads
the whole slot map again after a few of them (redis-py's `reinitialize_steps`), so a demoted
master is retired within a few calls to its former slots.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

C = TypeVar("C")
RETIRE_SECONDS = 30.0


class MasterClients(Generic[C]):
    """Clients by master node name (`host:port`), current and retired."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._current: dict[str, C] = {}
        self._retired: list[tuple[float, C]] = []

    def get(self, name: str) -> C | None:
        return self._current.get(name)

    def add(self, name: str, client: C) -> None:
        self._current[name] = client

    def retire(self, masters: Iterable[str]) -> list[C]:
        """Retire the clients of nodes not in `masters` (the cluster's masters now, as the
        cluster client knows them); the retired clients due to be closed now."""
        now = self._clock()
        now_masters = set(masters)
        for former in [n for n in self._current if n not in now_masters]:
            self._retired.append((now, self._current.pop(former)))
        due = [client for since, client in self._retired if now - since >= RETIRE_SECONDS]
        self._retired = [(since, c) for since, c in self._retired if now - since < RETIRE_SECONDS]
        return due

    @property
    def names(self) -> set[str]:
        """The masters that have a current client."""
        return set(self._current)

    @property
    def retired(self) -> int:
        return len(self._retired)

    def take_all(self) -> list[C]:
        """Every client, current and retired, forgotten: the driver closes them."""
        clients = [*self._current.values(), *(client for _, client in self._retired)]
        self._current, self._retired = {}, []
        return clients
