"""What travels between the append script, the edge and the browser: event ids, the resume
cursor, the live announcement, and the frames built from them. Nothing else spells these.

**Event ids.** Each recipient (a user, a business, everyone) has a log of its own, in its
own Redis hash slot, so there is no global sequence. An event's id is its place in its
recipient's log: `<kind><epoch>.<µs>-<n>`, for example `u1796116368526123.1796116370000001-0`.
`kind` is `u`, `b` or `a`; `epoch` names the incarnation of that log (a log lost with Redis's
data, or expired, starts a new one); `<µs>-<n>` is the Stream entry id, from the Redis clock
in microseconds, so that on one node, where every script runs in turn, ids across recipients
come in the order they were published.

**The cursor.** A connection listens as up to three recipients, so its resume cursor holds a
position in each: their components joined by `_`, with the component of the event the frame
carries first. A frame's `id` is therefore the connection's whole cursor after that frame,
and it starts with the event id that the publisher was given. Any client can store the last
`id` it saw and send it back as `since`, as the seed's protocol says; the edge parses it here.

**Frames.** The log stores each event's body without an id (`{"type":...}`), encoded once by
the publisher. The edge splices each connection's cursor in front (`{"id":"<cursor>",` and
the body's remainder): the JSON is still serialised once per event, only the cursor differs.

**Control frames** (`insight_ready`, `insight_gap`: their shapes are in `realtime.events`)
use the `insight_` prefix, so the seed's frontend, which switches on the five `ui_*` types,
ignores them.

**The announcement.** The append script publishes `<coalesce key>\\n<event id>\\n<body>` on the
recipient's live channel (`ANNOUNCEMENT_LUA` is the expression it uses), parsed by
`parse_announcement`. An event for one tab of a user that has it connected carries the tab's
id after the event id and a space (`<event id> <tab id>`): edges deliver it only to that tab's
connections (see `realtime.broker.log_calls`).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from realtime.events import Gap, Ready

KINDS = ("u", "b", "a")  # user, business, everyone: the first letter of every component
MAX_CURSOR_LENGTH = 1024
# Where the edge serves them: the WebSocket, its SSE twin and SSE's tickets, and the one
# channel a client may ask for (`channel=`, the seed's).
SOCKET_PATH = "/api/v1/insight"
SSE_PATH = "/api/v1/insight/sse"
TICKETS_PATH = "/api/v1/insight/tickets"
DEFAULT_CHANNEL = "ui_events"

MAX_SEQ = 2**64 - 1  # the largest part (milliseconds or sequence) of a Stream entry id

# fullmatch, not match with `$`, which also matches before a final newline
_COMPONENT = re.compile(r"([uba])([0-9]{1,20})\.([0-9]{1,20})-([0-9]{1,20})")
_ID_PREFIX = b'{"id":"'
_READY_ID = b'"type":"insight_ready","id":"'

# The Lua expression the append script publishes; `coalesce`, `event_id`, `scope` (a space and
# the tab's id, or '') and `body` are locals of that script. Kept here, next to its parser.
ANNOUNCEMENT_LUA = "coalesce .. '\\n' .. event_id .. scope .. '\\n' .. body"

# A control announcement on a user's live channel: the user was disconnected by the server
# API (realtime.presence); its body is the revocation mark. No event id starts with "!", so
# the hub tells it apart only where it already handles an id that is not an event's.
REVOKE_EVENT_ID = "!revoke"
REVOKE_ANNOUNCEMENT = f"\n{REVOKE_EVENT_ID}\n"  # the prefix a REVOKE script publishes

Key = tuple[int, int]  # a Stream entry id as numbers, which order it


class Position(NamedTuple):
    """Where a connection stands in one recipient's log: after entry `key` of epoch `epoch`
    (None before the log was first read: a position taken from the clock at the handshake).

    A named tuple, not a frozen dataclass: the edge makes one per event it delivers, and a
    frozen dataclass's constructor costs twice as much (0.40 against 0.21 µs)."""

    kind: str
    epoch: str | None
    key: Key

    @property
    def entry(self) -> str:
        return f"{self.key[0]}-{self.key[1]}"

    def component(self) -> str:
        return f"{self.kind}{self.epoch or '0'}.{self.entry}"


def entry_key(entry_id: str) -> Key:
    """The sort key of a Stream entry id (`<µs>-<n>`)."""
    micros, _, seq = entry_id.partition("-")
    return int(micros), int(seq)


def parse_event_id(event_id: str) -> Position | None:
    """The position an event id (`<kind><epoch>.<µs>-<n>`) names, or None if it is not one."""
    match = _COMPONENT.fullmatch(event_id)
    if match is None:
        return None
    kind, epoch, micros, seq = match.groups()
    key = (int(micros), int(seq))
    if key[0] > MAX_SEQ or key[1] > MAX_SEQ:  # no Stream entry id has a part over 64 bits
        return None
    return Position(kind, epoch, key)


def parse_cursor(cursor: str) -> dict[str, Position] | None:
    """The positions a `since` cursor holds, by kind; None if it is not a cursor. Each kind
    appears at most once; a kind it lacks starts from the handshake."""
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH or not cursor.isascii():
        return None
    positions: dict[str, Position] = {}
    for component in cursor.split("_"):
        position = parse_event_id(component)
        if position is None or position.kind in positions:
            return None
        positions[position.kind] = position
    return positions


def event_id_of(frame_id: str) -> str:
    """The id of the event a frame carries (the first component of the frame's cursor)."""
    return frame_id.partition("_")[0]


def announcement(coalesce_key: str, event_id: str, body: str, tab: str = "") -> bytes:
    """What `ANNOUNCEMENT_LUA` builds, for a producer that announces without the log."""
    scope = f" {tab}" if tab else ""
    return f"{coalesce_key}\n{event_id}{scope}\n{body}".encode()


def parse_announcement(data: bytes) -> tuple[str, bytes, bytes, bytes]:
    """(coalesce key, event id, tab id or b"", body) of a live announcement; the id and the
    tab stay bytes, as the edge writes the one and compares the other."""
    coalesce, _, rest = data.partition(b"\n")
    event_id, _, body = rest.partition(b"\n")
    event_id, _, tab = event_id.partition(b" ")
    return coalesce.decode(), event_id, tab, body


def splice(cursor: bytes, body: bytes) -> bytes:
    """The frame of `body` (`{"type":...}`) for a connection whose cursor is `cursor`."""
    return _ID_PREFIX + cursor + b'",' + body[1:]


def frame_id(frame: bytes) -> bytes | None:
    """A frame's `id` without parsing it: an event's comes first (`splice`), `insight_ready`'s
    right after its type (its shape has no nested object); `insight_gap` has none."""
    if frame.startswith(_ID_PREFIX):
        return frame[7 : frame.index(b'"', 7)]
    start = frame.find(_READY_ID)
    if start < 0:
        return None
    start += len(_READY_ID)
    return frame[start : frame.index(b'"', start)]


def ready_frame(cursor: str) -> bytes:
    """`insight_ready` (`realtime.events.Ready`): the connection is live."""
    return Ready(id=cursor).model_dump_json().encode()


def gap_frame(since: str) -> bytes:
    """`insight_gap` (`realtime.events.Gap`): events after `since` are gone from the log."""
    return Gap(since=since).model_dump_json().encode()


def frame_type(frame: bytes) -> str:
    """The `type` of a frame without parsing it: the first `"type":"` key is the frame's own
    (context keys and the id come first, and none of them is called type)."""
    start = frame.find(b'"type":"')
    if start < 0:
        return "other"
    start += 8
    return frame[start : frame.find(b'"', start)].decode(errors="replace")
