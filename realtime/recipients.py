"""Who an event is addressed to, and the Redis names that follow from it: the only place
where key and channel names are spelled.

Each recipient (a user, a business, or everyone) has its own durable log (a Stream), its
metadata (the log's epoch and position), its idempotency keys and its live channel, all under
one hash tag (`insight:{user:42}:...`): they share one hash slot, so one script can touch them
all on a Redis Cluster, and different recipients spread over every shard. An edge subscribes
only to the live channels of the recipients connected to it.

Ids are whatever an identity provider issues (`realtime.ids`): `urn:user:42` has a `:`, an id
may hold `{` or `}` (which would move a key's hash tag), `%`, spaces, any script. So no name
holds an id as given: it holds `key_part(id)`, the id's RFC 3986 percent-encoding (the
unreserved `A-Z a-z 0-9 - . _ ~` kept, every other UTF-8 byte written `%XX`, `%` itself
included). The encoding is injective (`ident_of_key_part` reverses it), so ids differing in
anything (case, `:` against `%3A`, one Unicode form against another) never share a key, and
its output never holds `{`, `}`, `:`, a space or a control character, so every key of a
recipient has the one hash tag `{<kind>:<encoded id>}`. Ids of letters, digits and `-._~`
(`42`, `b1`) keep the names they always had.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote, unquote

from realtime.ids import check_id

KEY_PREFIX = "insight"

RecipientKind = Literal["user", "business", "all"]
_LETTERS: dict[RecipientKind, str] = {"user": "u", "business": "b", "all": "a"}

_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def key_part(ident: str) -> str:
    """The id as it appears in Redis names: its percent-encoding (see the module's doc)."""
    if _UNRESERVED.fullmatch(ident):
        return ident  # the common case, and the names such ids always had
    return quote(ident, safe="", encoding="utf-8", errors="strict")


def ident_of_key_part(part: str) -> str:
    """The id whose `key_part` is `part`. (What this version writes always decodes; `replace`
    only keeps a presence field written by an older one, whose ids were not encoded, from
    failing a read until it expires.)"""
    return unquote(part, encoding="utf-8", errors="replace")


@dataclass(frozen=True, slots=True)
class Recipient:
    """An addressee of UI events; `str()` is its stable name, for example `user:42`, which is
    also its keys' hash tag (an id of other characters appears encoded: `user:urn%3Auser%3A42`)."""

    kind: RecipientKind
    ident: str = ""
    _name: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind == "all":
            if self.ident:
                raise ValueError("the broadcast recipient has no id")
            name = "all"
        else:
            try:
                check_id(self.ident)
            except ValueError as error:
                raise ValueError(f"{self.kind} id {error}") from None
            name = f"{self.kind}:{key_part(self.ident)}"
        object.__setattr__(self, "_name", name)  # computed once: every key name starts with it

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
        return self._name

    @property
    def letter(self) -> str:
        """The kind's letter in event ids and cursors (`u`, `b`, `a`)."""
        return _LETTERS[self.kind]

    @property
    def _prefix(self) -> str:
        return f"{KEY_PREFIX}:{{{self._name}}}"

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

    def version_key(self, coalesce_key: str) -> str:
        """The newest version published under `coalesce_key`, and its event's id."""
        return f"{self._prefix}:version:{coalesce_key}"

    @property
    def live_channel(self) -> str:
        """The sharded pub/sub channel announcing this recipient's events as they are
        published."""
        return f"{self._prefix}:live"

    @property
    def presence_key(self) -> str:
        """A hash of who is connected where (see `realtime.presence`): a user's has one field
        per edge process, a business's one per member and edge (`<key_part(user id)>:<edge>`)."""
        return f"{self._prefix}:presence"

    def ticket_key(self, secret: str) -> str:
        """A stream ticket of this user, by its secret part (see `realtime.broker.ticket_calls`):
        in the user's slot, so that whichever edge the stream reaches spends it there."""
        return f"{self._prefix}:ticket:{secret}"

    @property
    def tabs_key(self) -> str:
        """A user's hash of connected browser tabs: one field per tab and edge
        (`<tab id>:<edge>`), whose values are presence's (`realtime.broker.presence_calls`)."""
        return f"{self._prefix}:tabs"

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
