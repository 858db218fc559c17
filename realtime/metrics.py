"""Prometheus metrics of the edge, served at /metrics.

Counters on the delivery path are bumped once per message per process (not per connection),
through children cached by event type, so measuring costs little next to delivering.
Gauges that describe all connections are computed when Prometheus scrapes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from realtime.hub import Hub

EVENT_TYPES = ("ui_redirect", "ui_toast", "ui_refresh", "ui_update", "ui_modal", "other")

DELIVERED = Counter(
    "insight_edge_events_delivered", "Events handed to connections' send buffers", ["type"]
)
COALESCED = Counter(
    "insight_edge_events_coalesced", "Updates replaced by a newer one with the same key", ["type"]
)
DROPPED = Counter(
    "insight_edge_events_dropped",
    "Frames discarded with a connection closed for being too slow (the client resumes them "
    "with `since`)",
    ["type"],
)
CLOSES = Counter("insight_edge_closes", "Connections closed by the edge, by close code", ["code"])
LATENCY = Histogram(
    "insight_edge_event_latency_seconds",
    "From publish (the Redis time in the event id) to fan-out at this edge",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
REPLAYS = Counter("insight_edge_replays", "Catch-ups from the log (connects with since, resyncs)")
REPLAYED = Counter("insight_edge_replayed_events", "Events sent from the log rather than live")
GAPS = Counter("insight_edge_gaps", "insight_gap signals: a cursor older than the retention")

_delivered = {t: DELIVERED.labels(t) for t in EVENT_TYPES}
_dropped = {t: DROPPED.labels(t) for t in EVENT_TYPES}
_coalesced = COALESCED.labels("ui_update")


def frame_type(frame: str) -> str:
    """The `type` of a frame without parsing it: the first `"type":"` key is the event's own
    (context keys come before it and JSON escapes quotes inside values)."""
    start = frame.find('"type":"')
    if start < 0:
        return "other"
    start += 8
    kind = frame[start : frame.find('"', start)]
    return kind if kind in _delivered else "other"


def record_delivery(frame: str, event_id: str, listeners: int) -> None:
    _delivered[frame_type(frame)].inc(listeners)
    published_ms = int(event_id.partition("-")[0])
    LATENCY.observe(max(0.0, time.time() - published_ms / 1000))


def record_coalesced() -> None:
    _coalesced.inc()


def record_dropped(frames: list[str]) -> None:
    for frame in frames:
        _dropped[frame_type(frame)].inc()


class HubCollector(Collector):
    """Connection states, send-buffer depth and Redis reconnects, read at scrape time."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        connections = list(self.hub.connections)
        states = GaugeMetricFamily("insight_edge_connections", "Open connections", labels=["state"])
        catching_up = sum(1 for c in connections if c.catching_up)
        states.add_metric(["live"], len(connections) - catching_up)
        states.add_metric(["catching_up"], catching_up)
        yield states
        depth = GaugeMetricFamily(
            "insight_edge_send_buffer_frames", "Frames waiting in send buffers", labels=["stat"]
        )
        queued = [c.queued for c in connections] or [0]
        depth.add_metric(["total"], sum(queued))
        depth.add_metric(["max"], max(queued))
        yield depth
        yield GaugeMetricFamily(
            "insight_edge_subscribed_channels",
            "Recipient channels this edge subscribes to",
            value=self.hub.pubsub.channel_count,
        )
        yield CounterMetricFamily(
            "insight_edge_redis_reconnects",
            "Times the pub/sub connection to Redis was lost and re-established",
            value=self.hub.pubsub.reconnects,
        )
