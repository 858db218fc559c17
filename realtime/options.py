"""How one event is published, beside what it says: the one value every publishing call takes.

`ttl`, `coalesce_key` and `idempotency_key` once travelled as loose keywords through every
signature from `show_toast` down to the Redis script; they are one value now, checked once,
when it is made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from realtime.ids import check_client

# What an idempotency key may be made of (printable ASCII, no spaces): it becomes part of a
# Redis key name. The HTTP API's header takes the same characters, fewer of them.
IDEMPOTENCY_KEY_CHARACTERS = r"[\x21-\x7e]"
MAX_IDEMPOTENCY_KEY = 200
_IDEMPOTENCY_KEY = re.compile(rf"{IDEMPOTENCY_KEY_CHARACTERS}{{1,{MAX_IDEMPOTENCY_KEY}}}")


# The highest version: the append script compares versions as Lua numbers, exact up to 2**53.
MAX_VERSION = 2**53 - 1


@dataclass(frozen=True, slots=True)
class PublishOptions:
    """`ttl`: seconds the event stays worth replaying to a client that reconnects (None: its
    type's default, its model's `default_ttl_seconds`; at most the log's retention).
    `coalesce_key`: a newer event (a `ui_update`, an application's snapshot) with the same key
    replaces an older one still waiting in a slow client's buffer (for snapshots, not deltas).
    `idempotency_key`: a repeat with the same key within the retention returns the first
    event's id and publishes nothing. `client`: a user's event for one browser tab (its id,
    `client=` on its sockets): stored in the user's log like any other, and delivered only to
    that tab's connections if the tab is connected when it is published, else to all of the
    user's (see `realtime.broker.log_calls`). `version` (with `coalesce_key`): the snapshot's
    place in the order of the facts it reports; one whose version is below the newest
    published under its key within the retention is dropped (stored nowhere, announced to
    nobody; the call returns the newest's id). For snapshots published by several processes,
    whose publish order is not the order of their facts (a job's progress after its end).
    """

    ttl: float | None = None
    coalesce_key: str | None = None
    idempotency_key: str | None = None
    client: str | None = None
    version: int | None = None

    def __post_init__(self) -> None:
        if self.ttl is not None and not self.ttl > 0:
            raise ValueError(f"ttl must be positive, got {self.ttl}")
        if self.coalesce_key is not None and ("\n" in self.coalesce_key or not self.coalesce_key):
            raise ValueError("coalesce_key must be a non-empty single line")
        if self.idempotency_key is not None and not _IDEMPOTENCY_KEY.fullmatch(
            self.idempotency_key
        ):
            raise ValueError("idempotency_key must be 1-200 printable ASCII characters, no spaces")
        if self.client is not None:
            check_client(self.client)
        if self.version is not None:
            if type(self.version) is not int:
                raise ValueError(f"version must be an integer, got {self.version!r}")
            if self.coalesce_key is None:
                raise ValueError("version orders the events of one coalesce_key: give one")
            if not 0 <= self.version <= MAX_VERSION:
                raise ValueError(f"version must be between 0 and {MAX_VERSION}, got {self.version}")


DEFAULT_OPTIONS = PublishOptions()
