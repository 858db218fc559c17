"""The tables of the scenarios under churn (10 to 12: `bench.churn`, `bench.large_replay`),
whose notes say at length what each figure is."""

from __future__ import annotations

from bench.layout import Layout

CHURN_LAYOUTS = {
    "jitter": Layout(
        "10. Jitter: each socket killed without a close every ~15 s, back with `since` ~2 s later",
        ("target",),
        (
            "source",
            "clients",
            "edges",
            "seconds",
            "rate",
            "published_per_s",
            "published",
            "delivered_pct",
            "lost",
            "duplicated",
            "out_of_order",
            "gaps",
            "reconnects",
            "with_missed",
            "replay_p50_s",
            "replay_p99_s",
            "replay_max_s",
            "handshake_p99_s",
            "catch_up_p99_s",
            "p99_ms",
            "told_to_retry",
            "load_1m",
        ),
        baseline_name="Insight's figure, measured in this run",
        note="replay_*: from the start of a reconnect to the arrival of the first event published "
        "before it (the first missed one), over the reconnects that missed any (with_missed); "
        "target p99 <= 1 s. handshake: from a reconnect's TCP connect to the 101; catch_up: from "
        "the 101 to the first missed event. rate: offered, events/s; published_per_s: what the "
        "producers managed. The peers' rows are figures their authors published, quoted in issue "
        "20: not measured here, on other machines and loads. load_1m: the machine's 1-minute load "
        "average as the run ended (it has 2 cores, shared).",
    ),
    "rolling_deploy": Layout(
        "11. Rolling deploy: each edge in turn SIGTERMed and restarted while events flow",
        ("target",),
        (
            "clients",
            "edges",
            "rate",
            "published",
            "lost",
            "duplicated",
            "out_of_order",
            "gaps",
            "on_stopped_edges",
            "moved",
            "connected_at_end",
            "resume_p50_s",
            "resume_p99_s",
            "resume_max_s",
            "handshake_p99_s",
            "catch_up_p99_s",
            "outage_p50_s",
            "outage_p99_s",
            "outage_max_s",
            "all_resumed_s",
            "exit_s",
            "exit_hung",
            "restart_s",
            "told_to_retry",
            "p99_ms",
            "max_ms",
            "load_1m",
        ),
        note="on_stopped_edges: clients on each edge when it was sent SIGTERM, summed; moved: "
        "those of them that lost their socket and came back with `since`. resume: from the start "
        "of a reconnect to `insight_ready` on the new socket, which follows every missed event "
        "(target p99 <= 3 s), in two parts: handshake (to the 101, connects refused on the way "
        "included) and catch_up (the 101 to ready); outage: from losing the socket to that ready. "
        "all_resumed: SIGTERM to the last of an edge's clients ready (worst step); exit: SIGTERM "
        "to the process gone (exit_hung: edges still there 30 s after SIGTERM, killed; their "
        "stacks in the bench logs where py-spy is installed); restart: start to /readyz 200 (worst"
        " step). No comparison: no peer runs this here. load_1m: the machine's 1-minute load "
        "average as the run ended (it has 2 cores, shared).",
    ),
    "large_replay": Layout(
        "12. Large replays: stalled resumes of a log of big events, against another user's latency",
        ("measure",),
        (
            "commit",
            "published",
            "publish_call_p99_ms",
            "p50_ms",
            "p99_ms",
            "max_ms",
            "lost",
            "rss_before_mib",
            "rss_peak_mib",
            "rss_after_mib",
            "held_after",
            "released_s",
            "rss_released_mib",
            "refused_1013",
            "edge_closes_1013",
            "open_s",
            "first_data_p50_s",
            "no_first_frame",
            "load_1m",
        ),
        baseline=("measure", "no replays"),
        baseline_name="the same user's figure with no replays running, measured first in "
        "the same run on the same edge",
        note="published, publish_call and p50/p99/max: the reading user's events in the window "
        "(the same rate offered in both rows: fewer published means publishes waited). RSS of the "
        "edge process: before the window; after: `settle` s after the stalled sockets were reset, "
        "with held_after the stalled connections the edge still held then; released_s: when it "
        "held none (empty: not within the timeout), RSS then; peak: over the window and all that. "
        "refused_1013: stalled sockets whose first frame was a 1013 close; edge_closes_1013: "
        "sockets the edge closed with 1013 (its own counter); open_s: opening all the stalled "
        "sockets (handshakes); first_data: from a handshake to the first replayed frame. commit: "
        "the product code measured; the figures of b925434, before paged replay, are kept in "
        "[large_replay_before_b925434.md](large_replay_before_b925434.md). load_1m: the machine's "
        "1-minute load average as the run ended (it has 2 cores, shared).",
    ),
}
