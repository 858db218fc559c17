"""Disconnecting a user: the revocation mark and its announcement, the call built once
(any process disconnects through `realtime.revocation`).

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

from realtime.broker.call import Call
from realtime.broker.presence_scripts import REVOKE
from realtime.frames import REVOKE_ANNOUNCEMENT
from realtime.recipients import Recipient


def revoke(user: Recipient, keep_seconds: int) -> Call[int]:
    """Refuse the user's tokens issued up to now and close the user's sockets on every edge;
    the call returns the mark (Unix seconds, Redis clock: tokens with `iat` up to it are
    refused). Durable, as events are: a failover must not lose a revocation the caller was
    told had been made."""
    if user.kind != "user":
        raise ValueError(f"only a user can be disconnected, not {user}")
    args: list[str | int] = [user.live_channel, keep_seconds, REVOKE_ANNOUNCEMENT]
    return Call(REVOKE, [user.revoked_key], args, int, durable=True)
