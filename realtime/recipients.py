"""Who an event is addressed to, and the Redis names that follow from it: the only place
where key and channel names are spelled.

Each recipient (a user, a business, or everyone) has its own durable log (a Stream), its
metadata (the log's epoch and position), its idempotency keys and its live channel, all under
one hash tag (`insight:{user:42}:...`): they share one hash slot, so one script can touch them
all on a Redis Cluster, and different recipients spread over every shard. An edge subscribes
only to the live channels of the recipients connected to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

KEY_PREFIX = "insight"

RecipientKind = Literal["user", "business", "all"]
_LETTERS: dict[RecipientKind, str] = {"user": "u", "business": "b", "all": "a"}

# A user or business id: what a token's `sub` or `business_id` may be, and an API path may name.
ID_PATTERN = re.compile(r"^[^\s:{}]{1,200}$")


@dataclass(frozen=True, slots=True)
class Recipient:
    """An addressee of UI events; `str()` is its stable name, for example `user:42`."""

    kind: RecipientKind
    ident: str = ""

    def __post_init__(self) -> None:
        if self.kind == "all":
            if self.ident:
                raise ValueError("the broadcast recipient has no id")
        elif not ID_PATTERN.fullmatch(self.ident):  # `$` alone would allow a final newline
            raise ValueError(
                f"{self.kind} id must be 1-200 characters without whitespace, ':', '{{' or '}}', "
                f"got {self.ident!r}"
            )

    @classmethod
    def user(cls, user_id: str | int) -> Recipient:
        return cls("user", str(user_id))

    @classmethod
    def business(cls, business_id: str | int) -> Recipient:
        return cls("business", str(business_id))

    @classmethod
    def everyone(cls) -> Recipient:
        return cls("all")

    def __str__(self) -> str:
        return "all" if self.kind == "all" else f"{self.kind}:{self.ident}"

    @property
    def letter(self) -> str:
        """The kind's letter in event ids and cursors (`u`, `b`, `a`)."""
        return _LETTERS[self.kind]

    @property
    def _prefix(self) -> str:
        return f"{KEY_PREFIX}:{{{self}}}"

    @property
    def stream_key(self) -> str:
        """The Redis Stream holding this recipient's recent events, for replay."""
        return f"{self._prefix}:log"

    @property
    def meta_key(self) -> str:
        """A hash: the log's epoch, its newest entry id, and the newest one trimmed away."""
        return f"{self._prefix}:meta"

    def idempotency_key(self, key: str) -> str:
        """Remembers the id of the event published with idempotency key `key`."""
        return f"{self._prefix}:idem:{key}"

    @property
    def live_channel(self) -> str:
        """The sharded pub/sub channel announcing this recipient's events as they are
        published."""
        return f"{self._prefix}:live"

    @property
    def presence_key(self) -> str:
        """A hash of who is connected where (see `realtime.presence`): a user's has one field
        per edge process, a business's one per member and edge (`<user id>:<edge>`)."""
        return f"{self._prefix}:presence"

    @property
    def revoked_key(self) -> str:
        """A user's revocation mark: tokens issued in or before this second (Unix time, by
        the Redis clock) are refused (see `realtime.presence`)."""
        return f"{self._prefix}:revoked"


def recipients_of(user_id: str, business_id: str | None) -> tuple[Recipient, ...]:
    """Everyone a connection of this identity listens as: itself, its business, everyone."""
    own = [Recipient.user(user_id)]
    if business_id is not None:
        own.append(Recipient.business(business_id))
    own.append(Recipient.everyone())
    return tuple(own)
