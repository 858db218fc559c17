"""Stream tickets: the calls that keep and spend them, built once (the edge runs them).

`EventSource` cannot send an `Authorization` header, and a JWT in a URL ends up in access logs
and browser history; so a page trades its JWT for a ticket (POST /api/v1/insight/tickets) and
opens its stream with that. A ticket is a random secret kept under the user's key
(`Recipient.ticket_key`, in the user's hash slot, so that every edge finds it, on one Redis or
a cluster) with the identity it stands for as its value, for a few seconds. Opening a stream
spends it: one script reads and deletes it, so of any number of attempts with one ticket, on
any edges, exactly one gets its identity.
"""

from __future__ import annotations

from realtime.broker.call import Call, Lua, as_text
from realtime.recipients import Recipient

# KEYS: the ticket's key. ARGV: the identity it stands for, its lifetime in milliseconds.
ISSUE = Lua("redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\nreturn 1")
# KEYS: the ticket's key. Returns its value and deletes it (GETDEL, on any Redis version).
SPEND = Lua(
    "local value = redis.call('GET', KEYS[1])\n"
    "if value then redis.call('DEL', KEYS[1]) end\n"
    "return value"
)


def issue(user: Recipient, secret: str, identity: str, ttl_ms: int) -> Call[None]:
    """Keep a ticket of `user` standing for `identity` (an opaque string) for `ttl_ms`."""
    return Call(ISSUE, [user.ticket_key(secret)], [identity, ttl_ms], lambda _: None)


def spend(user: Recipient, secret: str) -> Call[str | None]:
    """The identity a ticket of `user` stands for, once; None if it is unknown, spent or
    expired."""
    return Call(SPEND, [user.ticket_key(secret)], [], _value)


def _value(reply: object) -> str | None:
    return None if reply is None else as_text(reply)
