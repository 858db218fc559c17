"""Why the edge closes a socket: the codes docs/protocol.md promises clients, each telling them what
to do next."""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    """Why the edge closed a socket; each tells the client what to do next."""

    SERVER_RESTARTING = 1012  # reconnect now, with `since`
    TRY_AGAIN_LATER = 1013  # overloaded or too slow to keep up: reconnect later, with `since`
    MESSAGE_TOO_BIG = 1009  # the client sent a frame over the size limit
    MALFORMED = 4400  # a bad query parameter or first frame: fix the client
    UNAUTHORIZED = 4401  # missing, invalid or expired token: get a new token
    FORBIDDEN = 4403  # channel or origin not allowed
    TOO_MANY_CONNECTIONS = 4429  # the user has WS_MAX_CONNECTIONS_PER_USER open: back off
