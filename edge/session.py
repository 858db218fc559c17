"""What every transport's session shares once its client is known, whichever way the frames
travel (a WebSocket, `edge.endpoint`; a Server-Sent Events stream, `edge.sse_endpoint`): where
it starts in each log, joining the hub and presence (the per-user cap, revocation), and giving
both back. The delivery itself is `edge.pump`'s, the same for both, so every guarantee (from
the open, resume, once, in order, ready and gap, the cap, revocation, expiry) is one code path.

A refusal is `Refused` with the WebSocket close code; each transport tells its client in its
own way (a close frame; an HTTP status before the stream, an `insight_close` message after).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from core.config import Settings
from core.security import Identity
from edge import telemetry
from edge.close_codes import CloseCode
from edge.connection import ClientConnection
from edge.frame_writer import FrameWriter, text_frame
from edge.hub import Hub, SubscribeTimeout
from edge.presence import Presence
from edge.pump import log_broker_failure
from realtime.broker import Admission
from realtime.broker.log_calls import start_position
from realtime.frames import MAX_SEQ, Position, parse_cursor
from realtime.recipients import recipients_of

logger = logging.getLogger(__name__)

ALWAYS = frozenset({"u", "a"})  # the kinds every connection listens as: its user, everyone

StartingPoint = tuple[dict[str, Position] | None, tuple[int, int] | None, bool]


class Refused(Exception):
    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def starting_point(requested: str | None, hub: Hub, settings: Settings) -> StartingPoint:
    """The positions `requested` (a `since` cursor) asks for (None if it is not a cursor),
    the Redis clock read before the client is told the session is open, and whether Redis was
    unreachable.

    A log without a position in the cursor is read from the clock reading on: whatever is
    published after the client's open is appended later, so its id is newer, and the catch-up
    that follows the subscription replays it. Starting from the logs' heads read after
    subscribing would lose what was published in between. The clock is read only when the
    cursor lacks the user's or everyone's position (the business's is in it only when the
    session had one; see `position`): a resume pays no extra Redis round trip."""
    since = parse_cursor(requested) if requested else {}
    if since is None or since.keys() >= ALWAYS:
        return since, None, False
    try:
        # Bounded: a Redis that stalls (SIGSTOP, a long script) must not hold the open.
        async with asyncio.timeout(settings.ws_subscribe_timeout_seconds):
            return since, await hub.log.server_time(), False
    except Exception as error:  # never a 500 for the open: 1013 (503) instead
        log_broker_failure("reading the redis clock failed", error)
        return since, None, True


def position(kind: str, since: dict[str, Position], clock: tuple[int, int] | None) -> Position:
    """Where the connection starts in the log of `kind`: where `since` says, else from the
    clock read at the open; a resume with no clock read whose cursor lacks the business's
    position (the token names a business the resumed session had not) starts that log at the
    cursor's oldest position, so that nothing published since is missed."""
    if kind in since:
        return since[kind]
    if clock is not None:
        return start_position(kind, clock)
    oldest = min(p.key for p in since.values())
    return Position(kind, None, (oldest[0] - 1, MAX_SEQ))


async def join(
    identity: Identity,
    start: StartingPoint,
    settings: Settings,
    hub: Hub,
    presence: Presence,
    *,
    wire: FrameWriter | None,
    since: str | None,
    client: str | None = None,
    encode: Callable[[bytes], bytes] = text_frame,
) -> ClientConnection:
    """A connection of `identity` (opened by the browser tab `client`, if it said),
    listening in the hub and admitted in presence; raises
    Refused (holding nothing) if it may not be. The caller must `leave` it."""
    positions, clock, _ = start
    assert positions is not None
    recipients = recipients_of(identity.user_id, identity.business_id)
    connection = ClientConnection(
        identity,
        recipients,
        [position(r.letter, positions, clock) for r in recipients],
        settings.ws_send_buffer,
        wire,
        since=since,
        client=client,
        encode=encode,
    )
    try:
        # Subscribed before the revocation and cap check: a revocation after the check
        # reaches this connection on its channel.
        await hub.listen(connection)
        async with asyncio.timeout(settings.ws_subscribe_timeout_seconds):
            _admitted(await presence.enter(identity, client))
    except SubscribeTimeout as error:
        hub.detach(connection)
        raise Refused(CloseCode.TRY_AGAIN_LATER, "subscription not confirmed") from error
    except Refused:
        hub.detach(connection)
        raise  # revoked, or over the cap
    except Exception as error:  # a client that breaks in another way is no less down
        hub.detach(connection)
        log_broker_failure("joining presence failed", error)
        raise Refused(CloseCode.TRY_AGAIN_LATER, "event log unavailable") from error
    return connection


def _admitted(admission: Admission) -> None:
    if admission is Admission.REVOKED:
        raise Refused(CloseCode.UNAUTHORIZED, "revoked")
    if admission is Admission.OVER_CAP:
        raise Refused(CloseCode.TOO_MANY_CONNECTIONS, "too many connections")


def ended(connection: ClientConnection, code: CloseCode, hub: Hub, transport: str) -> str:
    """Count and log a session the edge ends with `code`; the reason to tell the client."""
    logger.info(
        f"{transport} closing",
        extra={
            "user_id": connection.identity.user_id,
            "close_code": int(code),
            "queued": connection.queued,
        },
    )
    telemetry.CLOSES.labels(str(int(code))).inc()
    if code == CloseCode.TRY_AGAIN_LATER:
        telemetry.record_dropped(connection.unsent())
    revoked = code == CloseCode.UNAUTHORIZED and connection in hub.revoked
    return "revoked" if revoked else code.name.lower()


def refused(refusal: Refused, transport: str) -> None:
    """Count and log a session refused before it opened."""
    logger.info(
        f"{transport} refused", extra={"close_code": int(refusal.code), "reason": refusal.reason}
    )
    telemetry.CLOSES.labels(str(int(refusal.code))).inc()


def leave(connection: ClientConnection, hub: Hub, presence: Presence) -> None:
    """Give back what `join` took: the hub's routes and the slot of the per-user cap."""
    hub.detach(connection)
    presence.leave(connection.identity, connection.client)
