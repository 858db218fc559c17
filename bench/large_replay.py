"""12. Large replays against another user's latency (issue 20, item 3).

The guarantee ("Nothing held", docs/protocol.md): a resume never holds more than
WS_REPLAY_MAX_BYTES of replay per connection at once, and one client's replay never stalls
other users' publishes. This puts both to the test: one user's log is filled with `events`
events of ~`event_bytes` each (published with UIManager, as a worker would), then `sockets`
sockets of that user resume from the log's start at once and never read (`bench.stalled`),
while another user, connected and reading, receives `rate` events/s. Measured: that user's
publish-to-frame latency (p50/p99) and how many of its events could be published at all (a
publish waits while Redis is busy); the edge's RSS (psutil) before, `settle` seconds after
the stalled sockets are reset, and at its peak until then; how many of the stalled
connections the edge still held at that moment and when it let go of the last (its
/metrics); and the stalled sockets the edge refused at connect (a close frame first, 1013)
or closed with 1013 (its own count).

The comparison, in the same run and on the same edge: the same latency with no replays
running, measured first. Every row carries the commit of the code measured, so that figures
from before and after a change to the edge's replay can be told apart.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import redis

from bench import stalled
from bench.common import bench_settings, code_commit, percentile, token
from bench.rig import SPAWN, Rig
from bench.targets import Target
from realtime.eventlog import EventLog
from realtime.frames import MAX_SEQ, Position, parse_event_id
from realtime.publisher import UIManager
from realtime.recipients import Recipient

Row = dict[str, Any]
READER, REPLAYED = "reader", "replayed"
LEAD = 2.0  # seconds of traffic before the stalled sockets open
ENVELOPE = 80  # bytes of an event's body besides its blob
NO_REPLAYS = "no replays"


@dataclass(frozen=True)
class ReplaySizes:
    events: int = 1_000  # the log's default EVENTS_MAX_LEN: all of it replayable
    event_bytes: int = 60_000  # under the 64 KiB an event may be
    sockets: int = 20
    rate: float = 50  # events/s to the reading user
    seconds: float = 15  # each latency window
    settle: float = 10  # after the stalled sockets are reset, before RSS "after"
    release_timeout: float = 60  # the longest to wait, after the reset, for the edge to let go


QUICK_REPLAY = ReplaySizes(events=20, seconds=5, settle=2, release_timeout=10)


def _fill(redis_url: str, sizes: ReplaySizes) -> str:
    """Publish the big events to REPLAYED's log (for as long as the log keeps anything);
    the cursor just before the first of them, which resumes from the log's start."""
    retention = bench_settings().retention
    client = redis.Redis.from_url(redis_url)
    ui = UIManager(Recipient.user(REPLAYED), EventLog(client, retention))
    blob = "x" * (sizes.event_bytes - ENVELOPE)
    ids = [
        ui.update_ui({"t": 0, "to": REPLAYED, "n": n, "blob": blob}, ttl=retention.max_age_seconds)
        for n in range(sizes.events)
    ]
    client.close()
    first = parse_event_id(ids[0])
    assert first is not None
    micros, _ = first.key
    return Position(first.kind, first.epoch, (micros - 1, MAX_SEQ)).component()


class _Peak:
    """The edge's RSS sampled every 20 ms in a thread until stopped: its peak."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.peak = rig.server_rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.rig.server_rss())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def _metrics(port: int) -> dict[str, float]:
    """The edge's Prometheus samples (name with labels -> value)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    lines = (line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    return {name: float(value) for name, value in lines}


def _closes(metrics: dict[str, float]) -> int:
    """Sockets the edge has closed with 1013 so far."""
    return int(metrics.get('insight_edge_closes_total{code="1013"}', 0))


def _held(metrics: dict[str, float]) -> int:
    """Connections the edge holds besides the reader's (live or catching up)."""
    states = ('{state="live"}', '{state="catching_up"}')
    return int(sum(metrics.get(f"insight_edge_connections{s}", 0) for s in states)) - 1


def _stall(port: int, path: str, sizes: ReplaySizes) -> dict[str, Any]:
    """Open the stalled sockets LEAD seconds into the window, reset them near its end."""
    time.sleep(LEAD)
    ours, theirs = SPAWN.Pipe()
    process = SPAWN.Process(target=stalled.hold, args=(port, path, sizes.sockets, theirs))
    process.start()
    try:
        if not ours.poll(60) or ours.recv() != "open":
            raise RuntimeError("the stalled sockets did not open")
        time.sleep(max(1.0, sizes.seconds - LEAD))
        ours.send("close")
        if not ours.poll(60):
            raise RuntimeError("the stalled sockets did not close")
        answer: dict[str, Any] = ours.recv()
        return answer
    finally:
        process.join(10)
        if process.is_alive():
            process.kill()


def _mib(rss: int) -> float:
    return round(rss / 2**20, 1)


def _aftermath(rig: Rig, sizes: ReplaySizes, closed_at: float, closes: int) -> Row:
    """After the stalled sockets are reset: RSS and what the edge still holds `settle`
    seconds later, then how long until it holds none of them (at most `release_timeout`
    seconds), RSS then, and the 1013 closes it made meanwhile."""
    port = rig.ports[0]
    row: Row = {}
    released: float | None = None
    while True:
        metrics = _metrics(port)
        since = time.monotonic() - closed_at
        if released is None and _held(metrics) <= 0:
            released = since
        if "rss_after_mib" not in row and since >= sizes.settle:
            row |= {"rss_after_mib": _mib(rig.server_rss()), "held_after": _held(metrics)}
        if "rss_after_mib" in row and (released is not None or since >= sizes.release_timeout):
            break
        time.sleep(0.25)
    return row | {
        "released_s": None if released is None else round(released, 1),
        "rss_released_mib": _mib(rig.server_rss()),
        "edge_closes_1013": _closes(metrics) - closes,
    }


def _window(rig: Rig, sizes: ReplaySizes, path: str | None) -> Row:
    """One latency window for READER; with `path`, the stalled sockets resume during it.
    The peak RSS is of the whole window, and of the aftermath with stalled sockets."""
    closes = _closes(_metrics(rig.ports[0]))
    before = rig.server_rss()
    peak = _Peak(rig)
    traffic = rig.start(sizes.rate, sizes.seconds)
    seen = _stall(rig.ports[0], path, sizes) if path is not None else None
    # Before the reader's events are counted: a drain gives up after a second without
    # progress, and an edge still busy with replays may be that slow.
    aftermath = _aftermath(rig, sizes, time.monotonic(), closes) if seen is not None else {}
    window = rig.finish(traffic)
    row: Row = {
        "published": window.published,
        "publish_call_p99_ms": window.publish_call_p99_ms,
        "lost": window.lost,
        "p50_ms": window.p50_ms,
        "p99_ms": window.p99_ms,
        "max_ms": window.max_ms,
        "rss_before_mib": _mib(before),
    }
    if seen is not None:
        codes: list[int] = seen["first_codes"]
        data = [s for code, s in zip(codes, seen["first_frame_s"], strict=True) if code == 0]
        median = percentile(data, 0.5)
        row |= {
            "open_s": round(seen["open_s"], 2),
            "refused_1013": codes.count(1013),
            "first_codes": {str(code): codes.count(code) for code in set(codes)},
            "first_data_p50_s": None if median is None else round(median, 2),
            "no_first_frame": seen["no_frame"],
            **aftermath,
        }
    return row | {"rss_peak_mib": _mib(peak.stop()), "load_1m": round(os.getloadavg()[0], 1)}


def large_replay(sizes: ReplaySizes, targets: tuple[Target, ...]) -> Iterator[Row]:
    """12. Stalled resumes of a log of big events, against another user's latency."""
    if not any(t.name == "insight" for t in targets):
        return
    insight = Target("insight")
    commit = code_commit()
    with Rig(insight) as rig:
        rig.connect([READER])
        started = time.monotonic()
        cursor = _fill(rig.redis_url, sizes)
        filled = round(time.monotonic() - started, 2)
        common = {"sockets": sizes.sockets, "events": sizes.events,
                  "event_kb": round(sizes.event_bytes / 1000), "rate": sizes.rate,
                  "commit": commit}  # fmt: skip
        yield {"measure": NO_REPLAYS, **common, **_window(rig, sizes, None)}
        path = insight.path(REPLAYED, token(REPLAYED), cursor)
        replayed = f"{sizes.sockets} stalled resumes of {sizes.events} x {common['event_kb']} kB"
        yield {
            "measure": replayed,
            **common,
            "replay_mib_per_socket": round(sizes.events * sizes.event_bytes / 2**20, 1),
            "fill_seconds": filled,
            **_window(rig, sizes, path),
        }
