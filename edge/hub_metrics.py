"""The hub's gauges for Prometheus, read at scrape time: connection states, send-buffer depth,
subscribed channels and Redis reconnects (the counters of the delivery path are
`edge.telemetry`'s)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from edge.hub import Hub


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
            value=self.hub.feed.channel_count,
        )
        yield CounterMetricFamily(
            "insight_edge_redis_reconnects",
            "Times the pub/sub connection to Redis was lost and re-established",
            value=self.hub.feed.reconnects,
        )
