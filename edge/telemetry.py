"""Prometheus metrics of the edge, served at /metrics.

The delivery path counts once per message per process (not per connection), in plain
integers that become metric families only when Prometheus scrapes: prometheus_client's
Counter.inc and Histogram.observe take a lock and a few calls each, a share of the edge's
CPU that grows with the event rate (measured: bench/results/design-figures.md). Gauges that
describe all connections are computed at scrape time too (`edge.hub_metrics`).
"""

from __future__ import annotations

import itertools
import time
from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from realtime import frames
from realtime.frames import Position
from realtime.registry import event_registry

# The declared types (the five and the application's, INSIGHT_EVENT_MODULES): a label each, so
# the label set stays bounded whatever a producer sends.
EVENT_TYPES = (*event_registry().events, "other")

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
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
REPLAYS = Counter("insight_edge_replays", "Catch-ups from the log (connects with since, resyncs)")
REPLAYED = Counter("insight_edge_replayed_events", "Events sent from the log rather than live")
GAPS = Counter("insight_edge_gaps", "insight_gap signals: a cursor older than the retention")

_known_types = frozenset(EVENT_TYPES)
_dropped = {t: DROPPED.labels(t) for t in EVENT_TYPES}
_coalesced = {t: COALESCED.labels(t) for t in EVENT_TYPES}


def frame_type(frame: bytes) -> str:
    """The frame's event type, one of EVENT_TYPES."""
    kind = frames.frame_type(frame)
    return kind if kind in _known_types else "other"


_TYPE_HEAD = b'{"type":"'  # how the publisher begins every body it encodes


class Deliveries(Collector):
    """Events handed to connections, by type, and their latency from publish to fan-out.

    Counted by the type's bytes as the body spells it, decoded only at scrape time: the
    fan-out records every event, and this halves what that costs (0.96 against 0.45 µs)."""

    def __init__(self) -> None:
        self.by_type = dict.fromkeys((t.encode() for t in EVENT_TYPES), 0)
        self.latency_buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.latency_sum = 0.0

    def record(self, body: bytes, event: Position, listeners: int) -> None:
        if body.startswith(_TYPE_HEAD):
            kind = body[9 : body.find(b'"', 9)]
        else:
            kind = frames.frame_type(body).encode()
        by_type = self.by_type
        if kind in by_type:
            by_type[kind] += listeners
        else:  # not a declared type: the label set stays bounded whatever arrives
            by_type[b"other"] += listeners
        latency = max(0.0, time.time() - event.key[0] / 1_000_000)
        self.latency_buckets[bisect_left(LATENCY_BUCKETS, latency)] += 1
        self.latency_sum += latency

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        delivered = CounterMetricFamily(
            "insight_edge_events_delivered", "Events handed to connections", labels=["type"]
        )
        for kind, count in self.by_type.items():
            delivered.add_metric([kind.decode()], count)
        yield delivered
        cumulative = list(itertools.accumulate(self.latency_buckets))
        bounds = [str(bound) for bound in LATENCY_BUCKETS] + ["+Inf"]
        yield HistogramMetricFamily(
            "insight_edge_event_latency_seconds",
            "From publish (the Redis time in the event id) to fan-out at this edge",
            buckets=list(zip(bounds, cumulative, strict=True)),
            sum_value=self.latency_sum,
        )


DELIVERIES = Deliveries()
REGISTRY.register(DELIVERIES)
record_delivery = DELIVERIES.record


def record_coalesced(frame: bytes) -> None:
    _coalesced[frame_type(frame)].inc()


def record_dropped(unsent: list[bytes]) -> None:
    for frame in unsent:
        _dropped[frame_type(frame)].inc()
