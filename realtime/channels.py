"""Who an event is addressed to, and the Redis names that follow from it: the only place
where key and channel names are spelled.

Each recipient (a user, a business, or everyone) has its own durable log (a Stream) and its
own live pub/sub channel, so an edge process subscribes only to the recipients that have
connections on it. One global sequence key orders events across all recipients, which is
what lets one opaque cursor resume a connection that listens to three of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

KEY_PREFIX = "insight"
SEQUENCE_KEY = f"{KEY_PREFIX}:seq"

RecipientKind = Literal["user", "business", "all"]

_ID_PATTERN = re.compile(r"^[^\s:]{1,200}$")
_CURSOR_PATTERN = re.compile(r"^\d{1,15}-\d{1,15}$")


@dataclass(frozen=True, slots=True)
class Recipient:
    """An addressee of UI events; `str()` is its stable name, for example `user:42`."""

    kind: RecipientKind
    ident: str = ""

    def __post_init__(self) -> None:
        if self.kind == "all":
            if self.ident:
                raise ValueError("the broadcast recipient has no id")
        elif not _ID_PATTERN.match(self.ident):
            raise ValueError(
                f"{self.kind} id must be 1-200 characters without whitespace or ':', "
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
    def stream_key(self) -> str:
        """The Redis Stream holding this recipient's recent events, for replay."""
        return f"{KEY_PREFIX}:log:{self}"

    @property
    def live_channel(self) -> str:
        """The pub/sub channel announcing this recipient's events as they are published."""
        return f"{KEY_PREFIX}:live:{self}"


def recipients_of(user_id: str, business_id: str | None) -> tuple[Recipient, ...]:
    """Everyone a connection of this identity listens as: itself, its business, everyone."""
    own = [Recipient.user(user_id)]
    if business_id is not None:
        own.append(Recipient.business(business_id))
    own.append(Recipient.everyone())
    return tuple(own)


def is_cursor(value: str) -> bool:
    """Whether `value` has the shape of an event id (`<ms>-<seq>`)."""
    return bool(_CURSOR_PATTERN.match(value))


def cursor_key(cursor: str) -> tuple[int, int]:
    """Sort key of an event id: ids are totally ordered across all recipients."""
    ms, _, seq = cursor.partition("-")
    return int(ms), int(seq)
