"""A connect, admitted or refused: the per-user connection cap and the revocation check,
in one script over the user's slot (the edge calls it: `edge.presence`).

**The cap.** A connect runs one script over the user's slot, after the edge has subscribed
the user's live channel and before the connection is caught up: it refuses a user whose
tokens are revoked (below), and a connection that would take the user's live counts on every
edge (this one's included, with this connection) past WS_MAX_CONNECTIONS_PER_USER; otherwise
it writes this edge's new count. Counts of other edges are as their last scripts left them, so
the cap holds across edges. An edge admits a user's connects one at a time and never writes a
connect still in flight, so a burst on several edges admits exactly the cap: never more, and
never fewer because of a connect that was itself refused. A socket that closes frees its
slot within a round trip; an edge that dies frees its slots within PRESENCE_TTL_SECONDS.
"""

from __future__ import annotations

import enum
import math
from typing import Any

from realtime.broker.call import Call
from realtime.broker.presence_calls import Stamp
from realtime.broker.presence_scripts import ENTER
from realtime.recipients import Recipient


class Admission(enum.Enum):
    ADMITTED = 0
    REVOKED = 1
    OVER_CAP = 2


def enter(
    user_id: str,
    issued_at: float | None,
    count: int,
    cap: int,
    by: Stamp,
    tab: tuple[str, int] | None = None,
) -> Call[Admission]:
    """Admit a connection of the user on the edge, whose count there would become `count`:
    unless the user's revocation mark refuses a token issued at `issued_at`, or the user's
    connections on every edge would pass `cap` (0: none). A connection of a browser tab,
    `tab` (its id, and the edge's count of its connections with this one), is written in the
    user's tabs hash in the same step, so an event for that tab finds it connected as soon
    as the connection is."""
    user = Recipient.user(user_id)
    iat = -1 if issued_at is None else math.floor(issued_at)
    keys = [user.presence_key, user.revoked_key]
    args: list[str | int] = [by.edge, count, by.seq, by.ttl_ms, cap, iat]
    if tab is not None:
        keys.append(user.tabs_key)
        args.extend((f"{tab[0]}:{by.edge}", tab[1]))
    return Call(ENTER, keys, args, _admission)


def _admission(reply: list[Any]) -> Admission:
    status, _total = reply
    return Admission(int(status))
