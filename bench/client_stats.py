"""What a load client process's connections feed and the benchmark reads back: each event
received, as a `Record`, and how many connections are ready.

Apart from any one kind of connection because every kind (WebSocket, SSE, the floor's Redis
subscriber) feeds the same `Stats`, and the rig counts the same records from all of them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

# (addressee, sequence number, latency in ns, the addressee the payload names)
Record = tuple[str, int, int, str]


@dataclass
class Stats:
    """What every connection of this process feeds, and what the benchmark asks for."""

    received: list[Record] = field(default_factory=list)
    ready: int = 0
    retries: int = 0  # connections the server asked to come back later (1012, 1013)
    all_ready: asyncio.Event = field(default_factory=asyncio.Event)
    wanted: int = 0

    def mark_ready(self) -> None:
        self.ready += 1
        if self.ready >= self.wanted:
            self.all_ready.set()
