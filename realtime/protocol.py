"""The edge's side of the WebSocket protocol beyond the five UI events: close codes, the two
control frames, and how a client may present its token.

Control frames use the `insight_` prefix so the seed's frontend, which switches on the five
`ui_*` types, ignores them:

- `{"type":"insight_ready","id":"<cursor>"}` is sent once the connection is live (after any
  replay). Its `id` is a valid `since` even if no event ever arrives, so a client that drops
  before its first event still resumes without a hole.
- `{"type":"insight_gap","since":"<cursor>"}` precedes a replay when events after `since`
  are no longer in the log (trimmed by retention, or the log was lost): the client should
  reload its state (for example re-fetch the page's data) rather than trust the replay.
"""

from __future__ import annotations

import json
from enum import IntEnum

DEFAULT_CHANNEL = "ui_events"
CHANNELS = frozenset({DEFAULT_CHANNEL})

# A browser cannot put a header on a WebSocket, but it can offer subprotocols: offering
# ["insight", "insight.bearer.<JWT>"] keeps the token out of URLs; the edge selects "insight".
SUBPROTOCOL = "insight"
BEARER_SUBPROTOCOL_PREFIX = "insight.bearer."


class CloseCode(IntEnum):
    """Why the edge closed a socket; each tells the client what to do next."""

    SERVER_RESTARTING = 1012  # reconnect now, with `since`
    TRY_AGAIN_LATER = 1013  # overloaded or too slow to keep up: reconnect later, with `since`
    MESSAGE_TOO_BIG = 1009  # the client sent a frame over the size limit
    MALFORMED = 4400  # a bad query parameter or first frame: fix the client
    UNAUTHORIZED = 4401  # missing, invalid or expired token: get a new token
    FORBIDDEN = 4403  # channel or origin not allowed


def ready_frame(cursor: str) -> str:
    return json.dumps({"type": "insight_ready", "id": cursor}, separators=(",", ":"))


def gap_frame(since: str) -> str:
    return json.dumps({"type": "insight_gap", "since": since}, separators=(",", ":"))


def token_from_subprotocols(offered: list[str]) -> str | None:
    for protocol in offered:
        if protocol.startswith(BEARER_SUBPROTOCOL_PREFIX):
            return protocol[len(BEARER_SUBPROTOCOL_PREFIX) :] or None
    return None


def token_from_first_frame(text: str) -> str | None:
    """The first frame may be `{"type":"auth","token":"..."}`; None if it is not that."""
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("type") != "auth":
        return None
    token = message.get("token")
    return token if isinstance(token, str) and token else None
