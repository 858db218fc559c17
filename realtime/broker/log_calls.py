"""The durable per-recipient event log in Redis: its two calls, APPEND and REPLAY, built once.

Appending is one script per event, over the keys of one recipient only (they share a hash
slot, see `realtime.recipients`), so an event is never in the log without being announced or
announced without being in the log, and the recipients of a Redis Cluster spread over all of
its shards.

Ids are the recipient's Stream entry ids, taken from the Redis clock in microseconds (see
`realtime.frames`). The log's metadata hash keeps its epoch (which incarnation of the log
this is), its newest entry id, and the newest id trimmed away by count; it lives as long as
the log (both expire EVENTS_MAX_AGE_SECONDS after the last append, or after a first read of
a log that has none), so a user who only connects costs Redis one small hash for that long.
A position is past retention, and replay reports a gap, when an entry newer than it was
trimmed, when the log is of another epoch (the log was lost, with Redis's data or by
expiry), or when the entry it names is gone though younger than the retention (a failover
promoted a replica that never got it, so later ones may be lost too). Each entry also
carries its own expiry (at most `max_age`), after which it is not replayed; trimming by age
therefore never drops a replayable event. A position of another epoch is replayed from the
new log's start, after the gap: its key means nothing in the new log.

Replay is paged: each call returns at most a page of entries and bytes, so neither Redis nor
the edge ever builds a whole log of large events in one reply, and other recipients' appends
wait behind a page at most (see `edge.catch_up`).

Durability: with `EVENTS_MIN_REPLICAS=N` an append returns only once N replicas hold the
event (`realtime.broker.call.Durability`); without it, once the master has it, and a
failover that loses it is reported to the clients that had seen it as `insight_gap`.

One tab: an event for one browser tab of a user (`PublishOptions.client`) is appended to the
user's log like any other; the script reads, in the same step, whether the tab has a live
entry in the user's tabs hash (written by the edges, as presence), and only then marks the
entry and its announcement with the tab's id. Edges deliver a marked event, live and on
replay, only to the connections that tab opened (`client=`); an unmarked one, to every
connection of the user: a tab that is gone when its event is published does not lose it to
nobody, every tab of the user gets it. The decision is made once, when the event is appended,
so a replay delivers it exactly as it was delivered live.

Idempotency: an append with an idempotency key remembers the id it returned under that key
(in the recipient's slot, for the log's retention); a repeat returns that id and publishes
nothing. Without a key each call makes one, kept briefly, so that a client library that
re-sends a script whose reply was lost cannot publish twice.

Versions: a snapshot published with a coalesce key and a version (`PublishOptions.version`)
is dropped, in the same step, when a higher version of that key was appended within the
retention; the script keeps the newest version and its id in the recipient's slot. Publish
order across processes is not the order of the facts published (one process commits a job's
progress, another its end, and the first publishes last): the version, taken from the fact,
keeps a late, older snapshot from reaching any client, live or on replay.
"""

from __future__ import annotations

import itertools
import os
import secrets
from dataclasses import dataclass
from typing import Any

from realtime.broker.call import Call, as_text
from realtime.broker.log_scripts import APPEND, REPLAY
from realtime.frames import MAX_SEQ, Key, Position, entry_key
from realtime.options import PublishOptions
from realtime.recipients import Recipient

MAX_FRAME_BYTES = 64 * 1024  # a UI event is a notification, not a data transfer
RETRY_KEY_TTL_SECONDS = 300  # the key made for a call without one guards its retries only


@dataclass(frozen=True, slots=True)
class Retention:
    """How much of each recipient's history the log keeps for replay."""

    max_len: int
    max_age_seconds: int


@dataclass(frozen=True, slots=True)
class Page:
    """A page of one recipient's log after a position: the log's epoch, whether events after
    the position are gone, the entries that follow, in order, as (key, entry id, body, the
    tab id of an event for one tab or ""), and
    whether more may follow the last entry it scanned (`scanned`, None if it scanned none).

    `through`: up to where the page holds every entry the log will ever have after the
    position. A page that stopped early: its last entry scanned. At the log's end, the clock
    too, since an entry appended later gets a later key: what merges several logs in publish
    order (`edge.catch_up`). A reader's position never moves past an entry it scanned."""

    epoch: str
    gap: bool
    entries: list[tuple[Key, str, bytes, str]]
    more: bool = False
    scanned: Key | None = None
    through: Key | None = None


_retry_prefix = ""
_retry_count = itertools.count()


def _new_retry_prefix() -> None:
    global _retry_prefix
    _retry_prefix = secrets.token_hex(8)


_new_retry_prefix()
os.register_at_fork(after_in_child=_new_retry_prefix)  # a forked child never reuses its parent's


def retry_key() -> str:
    """The key of a call made without an idempotency key: 64 random bits per process and a
    counter, unique across processes and calls (a uuid4 per call cost 4% of a publish)."""
    return f"retry:{_retry_prefix}.{next(_retry_count)}"


def start_position(kind: str, server_time: tuple[int, int]) -> Position:
    """The position just before anything appended after the clock read `server_time`
    (Redis TIME: seconds, microseconds): where a connection without `since` starts."""
    micros = server_time[0] * 1_000_000 + server_time[1]
    return Position(kind, None, (micros - 1, MAX_SEQ))


def append(
    recipient: Recipient, body: str, ttl: float, options: PublishOptions, retention: Retention
) -> Call[str]:
    """Store `body` (an encoded event, `{"type":...}`) in the recipient's log for `ttl`
    seconds and announce it; the call returns its id (the first one's, for a repeated key)."""
    check_event(recipient, body, ttl, options, retention)
    if options.idempotency_key is None:
        key, ttl_ms = retry_key(), RETRY_KEY_TTL_SECONDS * 1000
    else:
        key, ttl_ms = f"key:{options.idempotency_key}", retention.max_age_seconds * 1000
    keys = [
        recipient.stream_key,
        recipient.meta_key,
        recipient.idempotency_key(key),
        recipient.meta_key if options.client is None else recipient.tabs_key,
    ]
    args: list[str | int] = [
        recipient.live_channel,
        body,
        int(ttl * 1_000_000),
        retention.max_len,
        retention.max_age_seconds * 1_000_000,
        options.coalesce_key or "",
        ttl_ms,
        recipient.letter,
        "1",
        retention.max_age_seconds * 1000,  # the metadata lives as long as the log
        options.client or "",
    ]
    if options.version is not None and options.coalesce_key is not None:
        keys.append(recipient.version_key(options.coalesce_key))
        args.append(options.version)
    return Call(APPEND, keys, args, as_text, durable=True)


def check_event(
    recipient: Recipient, body: str, ttl: float, options: PublishOptions, retention: Retention
) -> None:
    """Refuse what no log takes (ValueError): a body that is not a JSON object, or over
    MAX_FRAME_BYTES, a ttl outside the log's retention, or a tab (`options.client`) for an
    event that is not a user's."""
    if options.client is not None and recipient.kind != "user":
        raise ValueError("only a user's events can be for one of the user's tabs")
    if not body.startswith('{"'):
        raise ValueError("an event body must be a JSON object")
    if len(body) > MAX_FRAME_BYTES // 4 and (size := len(body.encode())) > MAX_FRAME_BYTES:
        raise ValueError(f"an event may be at most {MAX_FRAME_BYTES} bytes, got {size}")
    if not 0 < ttl <= retention.max_age_seconds:
        raise ValueError(
            f"ttl must be between 0 and the log's retention ({retention.max_age_seconds} s), "
            f"got {ttl}"
        )


def replay(
    recipient: Recipient,
    after: Position,
    *,
    check: bool,
    max_entries: int,
    max_bytes: int,
    retention: Retention,
) -> Call[Page]:
    """A page of the recipient's log after `after`: at most `max_entries` entries, and about
    `max_bytes` (a page stops at the entry that reaches it). With `check`, whether events
    after the position are gone (only the first page of a catch-up: a later page starts where
    the previous one stopped, which may be no entry of this log)."""
    keys = [recipient.stream_key, recipient.meta_key]
    args: list[str | int] = [
        after.entry,
        after.epoch or "",
        "1" if check else "0",
        max_entries,
        max_bytes,
        retention.max_age_seconds * 1000,
        retention.max_age_seconds * 1_000_000,
    ]
    return Call(REPLAY, keys, args, _page)


def _page(reply: Any) -> Page:
    epoch, gap, more, scanned, through, *flat = reply
    entries = []
    for index in range(0, len(flat), 3):
        entry = as_text(flat[index])
        entries.append((entry_key(entry), entry, bytes(flat[index + 2]), as_text(flat[index + 1])))
    return Page(
        epoch=as_text(epoch),
        gap=bool(gap),
        entries=entries,
        more=bool(more),
        scanned=entry_key(as_text(scanned)) if scanned else None,
        through=entry_key(as_text(through)) if through else None,
    )
