"""Who is connected, across every edge; the per-user connection cap; disconnecting a user:
the calls, built once (the edge's side of presence, its counts and heartbeat, is
`edge.presence`; any process's reads and disconnect, `realtime.presence`).

**Presence.** Each edge process counts its own connections per user and keeps those counts
in Redis (key names in `realtime.recipients`): a user's hash `insight:{user:42}:presence` has
one field per edge (its instance id), a business's hash `insight:{business:b1}:presence` one
per member and edge (`42:<edge>`: the member's id encoded as in key names, `key_part`, which
holds no `:`, so the first `:` ends it). A value is `<count>:<expires_ms>:<seq>`: the count
holds until `expires_ms` (the Redis clock) unless its edge writes it again, and `seq` orders one
edge's writes, so a write that arrives late (a heartbeat that a connect overtook on another
connection) never replaces a newer one. Every edge rewrites all its entries every
PRESENCE_TTL_SECONDS / 3 (one script per hash slot, pipelined: the cost is per edge and per
connected user, never per event), so the users of an edge that dies (kill -9) leave presence
within PRESENCE_TTL_SECONDS. Readers skip expired entries; writers sweep them away. A count
that falls to 0 is written as 0 and left to expire, so that no late write brings it back.

A read is one script over one key: a user's costs O(edges holding that user), a business's
O(its members online), however many users are online elsewhere. Redis 7.0 has no per-field
expiry (HEXPIRE is 7.4), hence the expiry inside each value.

**The cap.** A connect runs one script over the user's slot, after the edge has subscribed
the user's live channel and before the connection is caught up: it refuses a user whose
tokens are revoked (below), and a connection that would take the user's live counts on every
edge (this one's included, with this connection) past WS_MAX_CONNECTIONS_PER_USER; otherwise
it writes this edge's new count. Counts of other edges are as their last scripts left them, so
the cap holds across edges. One inexactness: connects of one user racing on one edge each
count the others still in flight, so for one round trip a refused one may be counted (a
neighbour then refused too early, never admitted past the cap). A socket that closes frees its
slot within a round trip; an edge that dies frees its slots within PRESENCE_TTL_SECONDS.

Business entries are written by the edge's flusher right after the connect (one pipeline for
everything that changed meanwhile), so a business's presence follows a connect by a round
trip, where a user's is written before the connection is ready.

**Revocation.** `revoke` (POST /api/v1/users/{id}/disconnect, `UIManager.disconnect()`)
runs one script over the user's slot: it sets the user's mark to the Redis clock's current
second (kept `Settings.revocation_keep_seconds`: the longest a token may live, plus the leeway
of JWT_LEEWAY_SECONDS it is accepted with past its `exp`) and announces it on the user's
live channel, which every edge holding a connection of that user has subscribed: the edges
close each such connection whose token was issued in or before that second with 4401
`revoked`. The announcement has the form of an event's (`<coalesce key>\\n<event id>\\n<body>`,
`realtime.frames`) with an event id no event has (`REVOKE_EVENT_ID`; an event id starts with
u, b or a), so the hub sees it only where it already found no event id: the delivery path pays
nothing for it. Connects and in-band renewals check the mark themselves; and each heartbeat
reads the marks of the edge's users, so a connection that missed the announcement (its
channel was being moved to another node) is closed within PRESENCE_TTL_SECONDS / 3.

Tokens issued in the same second as the revocation are refused too (`iat` has second
resolution): a client that logs in again gets a token the next second. Revocation compares
the Redis clock with the issuer's: keep them in sync (NTP). A token without `iat` is refused
while any mark of its user is held.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

from redis.crc import key_slot

from realtime.broker.call import Call, as_text
from realtime.broker.presence_scripts import ENTER, PUT, READ, REVOKE
from realtime.frames import REVOKE_ANNOUNCEMENT
from realtime.recipients import Recipient, ident_of_key_part, key_part


class Admission(enum.Enum):
    ADMITTED = 0
    REVOKED = 1
    OVER_CAP = 2


@dataclass(frozen=True, slots=True)
class Stamp:
    """Who writes presence and how: the edge, the order of its writes (a late write never
    replaces a newer one), and how long what it writes holds unless written again."""

    edge: str
    seq: int
    ttl_ms: int


Entry = tuple[str | None, str]  # (None, user): the user's count; (business, user): a member's
Marks = list[tuple[str, int]]  # (user id, revocation mark) for the marks a PUT found set


def read_user(user: Recipient) -> Call[int]:
    """The user's live connections on every edge."""
    return Call(READ, [_presence_key(user)], ["user"], int)


def read_business(business: Recipient) -> Call[dict[str, int]]:
    """The connected members of a business: user id -> live connections on every edge."""
    return Call(READ, [_presence_key(business)], ["business"], _members)


def revoke(user: Recipient, keep_seconds: int) -> Call[int]:
    """Refuse the user's tokens issued up to now and close the user's sockets on every edge;
    the call returns the mark (Unix seconds, Redis clock: tokens with `iat` up to it are
    refused). Durable, as events are: a failover must not lose a revocation the caller was
    told had been made."""
    if user.kind != "user":
        raise ValueError(f"only a user can be disconnected, not {user}")
    args: list[str | int] = [user.live_channel, keep_seconds, REVOKE_ANNOUNCEMENT]
    return Call(REVOKE, [user.revoked_key], args, int, durable=True)


def enter(
    user_id: str, issued_at: float | None, count: int, cap: int, by: Stamp
) -> Call[Admission]:
    """Admit a connection of the user on the edge, whose count there would become `count`:
    unless the user's revocation mark refuses a token issued at `issued_at`, or the user's
    connections on every edge would pass `cap` (0: none)."""
    user = Recipient.user(user_id)
    iat = -1 if issued_at is None else math.floor(issued_at)
    keys = [user.presence_key, user.revoked_key]
    return Call(ENTER, keys, [by.edge, count, by.seq, by.ttl_ms, cap, iat], _admission)


def put(entries: dict[Entry, int], by: Stamp) -> list[Call[Marks]]:
    """Write `entries` (this edge's counts), one call per hash slot; each call returns the
    revocation marks it found set for the users of its entries."""
    edge = by.edge
    by_slot: dict[int, tuple[dict[str, int], list[str | int], list[str]]] = {}
    for (business, user_id), count in entries.items():
        if business is None:
            user = Recipient.user(user_id)
            key, field, mark = user.presence_key, edge, user.revoked_key
        else:
            key, mark = Recipient.business(business).presence_key, ""
            field = f"{key_part(user_id)}:{edge}"
        keys, args, users = by_slot.setdefault(
            key_slot(key.encode()), ({}, [by.seq, by.ttl_ms], [])
        )
        index = keys.setdefault(key, len(keys) + 1)
        mark_index = keys.setdefault(mark, len(keys) + 1) if mark else 0
        args.extend((index, field, count, mark_index))
        users.append(user_id)
    return [Call(PUT, list(keys), args, _marks_of(users)) for keys, args, users in by_slot.values()]


def _presence_key(recipient: Recipient) -> str:
    if recipient.kind == "all":
        raise ValueError("presence is kept per user and per business, not for everyone")
    return recipient.presence_key


def _members(reply: list[Any]) -> dict[str, int]:
    """The READ script's {encoded user id, count, ...}, by user id."""
    return {
        ident_of_key_part(as_text(reply[i])): int(reply[i + 1]) for i in range(0, len(reply), 2)
    }


def _admission(reply: list[Any]) -> Admission:
    status, _total = reply
    return Admission(int(status))


def _marks_of(users: list[str]) -> Any:
    def marks(reply: list[Any]) -> Marks:
        return [(users[int(reply[i]) - 1], int(reply[i + 1])) for i in range(0, len(reply), 2)]

    return marks
