"""What each scenario's table shows: how its rows are grouped, which figures are columns,
and which row the ratios are to. `bench.report` turns rows into tables with these."""

from __future__ import annotations

from bench.churn_layouts import CHURN_LAYOUTS
from bench.layout import Layout

LAYOUTS = {
    "blocked_page": Layout(
        "14. A page whose WebSocket a proxy refuses: time to its first event (Chromium)",
        ("page", "target"),
        ("open_ms", "first_event_ms"),
        baseline=("page", "websocket"),
        baseline_name="the same page whose WebSocket opens",
        note="insight.js with its defaults: the WebSocket tried twice (fallbackAfter), then SSE.",
    ),
    "sse": Layout(
        "13. Server-Sent Events against WebSockets on one edge: U users, events at R/s",
        ("users", "rate", "target"),
        (
            "p50_ms",
            "p99_ms",
            "server_cpu_us_per_event",
            "rss_kib_per_connection",
            "lost",
            "misrouted",
            "duplicated",
        ),
        baseline_name="the same edge's WebSocket figure",
    ),
    "targeted_push": Layout(
        "1. Targeted push: U users, events to random users at R/s",
        ("users", "rate", "target"),
        (
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "max_ms",
            "lost",
            "misrouted",
            "duplicated",
            "server_cpu_us_per_event",
            "server_kernel_us_per_event",
            "server_wakeups_per_event",
            "rss_kib_per_connection",
            "connect_seconds",
            "redis_cpu_us_per_event",
            "producer_cpu_us_per_event",
        ),
    ),
    "highest_rate": Layout(
        "2. Highest sustained rate of one server process (1,000 users, two producers)",
        ("target",),
        (
            "sustained_per_s",
            "p50_ms",
            "p99_ms",
            "server_cpu_us_per_event",
            "failed_at_rate",
            "failed_p99_ms",
            "failed_lost",
            "failed_delivered_per_s",
            "failed_published_per_s",
        ),
    ),
    "connections": Layout(
        "3. Idle connections held by one server process",
        ("target",),
        (
            "connections",
            "accept_first",
            "seconds_to_accept_first",
            "seconds_to_accept_all",
            "rss_mib",
            "rss_kib_per_connection",
            "burst_lost",
        ),
    ),
    "scale_out": Layout(
        "4. Scale-out: users split over 1, 2 and 4 server processes",
        ("servers", "target"),
        ("p50_ms", "p99_ms", "lost", "server_cpu_us_per_event", "delivered_per_s"),
    ),
    "reconnect_storm": Layout(
        "5. Reconnect storm: every connection dropped and reopened at once while events flow",
        ("target",),
        (
            "users",
            "resumes",
            "seconds_to_catch_up",
            "told_to_retry",
            "published",
            "lost",
            "duplicated",
            "p99_ms",
            "max_ms",
        ),
    ),
    "job_pipeline": Layout(
        "6. Job pipeline: POST /api/v1/orders to the toast at the socket",
        ("rate", "target"),
        ("jobs_per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms"),
    ),
    "event_at_open": Layout(
        "7. Event published the instant a socket opens, against a socket long open",
        ("target",),
        (
            "rounds",
            "open_p50_ms",
            "open_p99_ms",
            "steady_p50_ms",
            "steady_p99_ms",
            "open_over_steady_p50",
        ),
    ),
    "cluster": Layout(
        "8. One Redis against a Redis Cluster of 3 masters and 3 replicas (Insight)",
        ("measure", "producer", "redis"),
        (
            "p50_ms",
            "p99_ms",
            "lost",
            "misrouted",
            "duplicated",
            "publish_call_p50_ms",
            "publish_call_p99_ms",
            "server_cpu_us_per_event",
            "producer_cpu_us_per_event",
            "redis_cpu_us_per_event",
            "masters_cpu_us_per_event",
            "busiest_master_cpu_pct",
            "busiest_master_commands_pct",
            "sustained_per_s",
            "failed_at_rate",
            "failed_published_per_s",
        ),
        baseline=("redis", "single"),
        baseline_name="the single Redis's figure for the same measure and producer "
        "(for EVENTS_MIN_REPLICAS, without the setting)",
    ),
    "server_api": Layout(
        "9. Server API: one HTTP publish and one presence read, against UIManager's publish",
        ("users", "calls", "target", "measure"),
        ("p50_ms", "p99_ms", "cpu_us_per_call", "client_cpu_us_per_call"),
        baseline=("measure", "publish, UIManager"),
        baseline_name="UIManager's direct publish in the same run (CPU: the API process's "
        "for HTTP, this process's for UIManager)",
    ),
    **CHURN_LAYOUTS,
    "broadcast": Layout(
        "15. A broadcast: one event to every socket of one server process, one event at a time",
        ("sockets", "target"),
        (
            "last_frame_ms",
            "first_frame_ms",
            "frame_p50_ms",
            "server_cpu_ms_per_broadcast",
            "server_cpu_us_per_frame",
            "delivered_pct",
            "duplicated",
            "connect_seconds",
        ),
        note="last_frame: from the publish call to the last socket's frame, the median over "
        "the events; Insight splices each receiver's resume cursor into the frame, broadcaster "
        "sends one message. The load clients share the machine's two cores with the server.",
    ),
}
