"""Who is connected, across every edge: the calls that write and read presence, built once
(the edge's side, its counts and heartbeat, is `edge.presence`; any process's reads,
`realtime.presence`). A connect is admitted by `admission_calls`; a user is disconnected by
`revocation_calls`.

**Presence.** Each edge process counts its own connections per user and keeps those counts
in Redis (key names in `realtime.recipients`): a user's hash `insight:{user:42}:presence` has
one field per edge (its instance id), a business's hash `insight:{business:b1}:presence` one
per member and edge (`42:<edge>`: the member's id encoded as in key names, `key_part`, which
holds no `:`, so the first `:` ends it), and a user's hash `insight:{user:42}:tabs` one per
browser tab and edge (`<tab id>:<edge>`; a tab id holds no `:`), which the log's APPEND reads
for an event addressed to one tab (`log_calls`). A value is `<count>:<expires_ms>:<seq>`: the count
holds until `expires_ms` (the Redis clock) unless its edge writes it again, and `seq` orders one
edge's writes, so a write that arrives late (a heartbeat that a connect overtook on another
connection) never replaces a newer one. Every edge rewrites all its entries every
PRESENCE_TTL_SECONDS / 3 (a script per hash slot on a cluster, per few hundred entries on
one Redis, pipelined: the cost is per edge and per connected user, never per event), so the
users of an edge that dies (kill -9) leave presence within PRESENCE_TTL_SECONDS. Readers skip
expired entries; writers sweep them away. A count that falls to 0 is written as 0 and left to
expire, so that no late write brings it back.

A read is one script over one key: a user's costs O(edges holding that user), a business's
O(its members online), however many users are online elsewhere. Redis 7.0 has no per-field
expiry (HEXPIRE is 7.4), hence the expiry inside each value.

Business entries are written by the edge's flusher right after the connect (one pipeline for
everything that changed meanwhile), so a business's presence follows a connect by a round
trip, where a user's is written before the connection is ready.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from redis.crc import key_slot

from realtime.broker.call import Call, as_text
from realtime.broker.presence_scripts import PUT, READ
from realtime.recipients import Recipient, ident_of_key_part, key_part


@dataclass(frozen=True, slots=True)
class Stamp:
    """Who writes presence and how: the edge, the order of its writes (a late write never
    replaces a newer one), and how long what it writes holds unless written again."""

    edge: str
    seq: int
    ttl_ms: int


class Entry(NamedTuple):
    """What an edge counts: a user's connections; with `business`, the user's as a member of
    that business; with `tab`, those of one of the user's browser tabs."""

    user: str
    business: str | None = None
    tab: str | None = None


Marks = list[tuple[str, int]]  # (user id, revocation mark) for the marks a PUT found set


def read_user(user: Recipient) -> Call[int]:
    """The user's live connections on every edge."""
    return Call(READ, [_presence_key(user)], ["user"], int)


def read_business(business: Recipient) -> Call[dict[str, int]]:
    """The connected members of a business: user id -> live connections on every edge."""
    return Call(READ, [_presence_key(business)], ["business"], _members)


ENTRIES_PER_CALL = 256  # on one Redis: each entry is a few commands inside the script


def put(entries: dict[Entry, int], by: Stamp, *, cluster: bool) -> list[Call[Marks]]:
    """Write `entries` (this edge's counts); each call returns the revocation marks it found
    set for the users of its entries. On a cluster, one call per hash slot (a script's keys
    share one); on one Redis, ENTRIES_PER_CALL entries a call, whatever their slots: a
    heartbeat of 1,000 users is then 8 scripts rather than about 2,000, which took a
    tenth of the edge's CPU at 2,000 events/s."""
    edge = by.edge
    groups: dict[int, tuple[dict[str, int], list[str | int], list[str]]] = {}
    for number, ((user_id, business, tab), count) in enumerate(entries.items()):
        if tab is not None:
            key, field, mark = Recipient.user(user_id).tabs_key, f"{tab}:{edge}", ""
        elif business is None:
            user = Recipient.user(user_id)
            key, field, mark = user.presence_key, edge, user.revoked_key
        else:
            key, mark = Recipient.business(business).presence_key, ""
            field = f"{key_part(user_id)}:{edge}"
        group = key_slot(key.encode()) if cluster else number // ENTRIES_PER_CALL
        keys, args, users = groups.setdefault(group, ({}, [by.seq, by.ttl_ms], []))
        index = keys.setdefault(key, len(keys) + 1)
        mark_index = keys.setdefault(mark, len(keys) + 1) if mark else 0
        args.extend((index, field, count, mark_index))
        users.append(user_id)
    return [Call(PUT, list(keys), args, _marks_of(users)) for keys, args, users in groups.values()]


def _presence_key(recipient: Recipient) -> str:
    if recipient.kind == "all":
        raise ValueError("presence is kept per user and per business, not for everyone")
    return recipient.presence_key


def _members(reply: list[Any]) -> dict[str, int]:
    """The READ script's {encoded user id, count, ...}, by user id."""
    return {
        ident_of_key_part(as_text(reply[i])): int(reply[i + 1]) for i in range(0, len(reply), 2)
    }


def _marks_of(users: list[str]) -> Any:
    def marks(reply: list[Any]) -> Marks:
        return [(users[int(reply[i]) - 1], int(reply[i + 1])) for i in range(0, len(reply), 2)]

    return marks
