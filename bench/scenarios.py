"""The scenarios of `make bench`. Each returns one row per measurement; `bench.report`
takes medians over the repeats and writes the tables and plots. How big each is, is
`bench.sizes`.

Targets run one after the other inside each repeat, so slow drifts of this shared machine
touch every target alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from bench import blocked_page, broadcast, churn, connect_latency, large_replay, server_api
from bench.order_to_toast import job_system, measure
from bench.rig import Rig
from bench.sizes import Sizes
from bench.targets import BY_NAME, EDGE_ONLY, SSE_TARGET, TARGETS, Target
from bench.window import Window
from core.config import Settings
from tests.local_cluster import LocalCluster, running_cluster

Row = dict[str, Any]
SERVERS = tuple(t for t in TARGETS if t.has_server)


def _users(count: int) -> list[str]:
    return [f"u{i}" for i in range(count)]


def _row(window: Window, **extra: Any) -> Row:
    return {**extra, **window.as_dict()}


def sse_against_websocket(sizes: Sizes, targets: tuple[Target, ...]) -> Iterator[Row]:
    """13. The same edge, its U users on Server-Sent Events or on WebSockets, events to random
    users at R/s: latency, the edge's CPU per event and its memory per idle connection."""
    for target in (BY_NAME["insight"], SSE_TARGET):
        with Rig(target) as rig:
            idle = rig.server_rss()
            rig.connect(_users(sizes.sse_users))
            rss = rig.server_rss()
            window = rig.traffic(sizes.sse_rate, sizes.seconds)
            kib = round((rss - idle) / 1024 / sizes.sse_users, 1)
            yield _row(window, users=sizes.sse_users, rss_kib_per_connection=kib)


def targeted_push(sizes: Sizes, targets: tuple[Target, ...]) -> Iterator[Row]:
    """1. U users connected, a producer pushing to random users at each rate R."""
    for users in sizes.users:
        for target in targets:
            clients = 1 if users <= 10_000 else 2
            with Rig(target, clients=clients) as rig:
                idle = rig.server_rss()
                connect_seconds = rig.connect(_users(users))
                rss = rig.server_rss()
                for rate in sizes.rates:
                    window = rig.traffic(rate, sizes.seconds)
                    yield _row(
                        window,
                        users=users,
                        server_rss_mib=round(rig.server_rss() / 2**20, 1) or None,
                        rss_kib_per_connection=round((rss - idle) / 1024 / users, 1)
                        if target.has_server
                        else None,
                        connect_seconds=round(connect_seconds, 2),
                    )


def highest_rate(sizes: Sizes, targets: tuple[Target, ...]) -> Iterator[Row]:
    """2. Raise R (two producer processes) through the ramp until p99 passes 100 ms, an event
    is lost, or the rate delivered falls 5% short of the rate offered; then halve the gap
    between the last rate that held and the first that failed, `refinements` times. The
    highest rate that held is the row. Where the rate published fell short too, the machine
    ran out before the server did; so with Insight also runs the Insight edge fed without its
    durable log (`insight-edge`), which shows the limit of the edge alone."""
    if any(t.name == "insight" for t in targets):
        at = next(i for i, t in enumerate(targets) if t.name == "insight") + 1
        targets = (*targets[:at], Target(EDGE_ONLY), *targets[at:])
    for target in targets:
        with Rig(target) as rig:
            rig.connect(_users(sizes.users[0]))
            yield _highest(rig, sizes)


def _highest(rig: Rig, sizes: Sizes) -> Row:
    """Scenario 2's ramp on a rig whose users are connected: the row of the highest rate
    that held, with what the first rate that failed looked like."""
    best: Window | None = None
    failed: tuple[float, Window] | None = None

    def attempt(rate: float) -> bool:
        nonlocal best, failed
        window = rig.traffic(rate, sizes.ramp_seconds, producers=2)
        held = (
            window.lost == 0
            and window.p99_ms is not None
            and window.p99_ms <= 100
            and window.delivered_per_s >= 0.95 * rate
        )
        if held:
            best = window
        else:
            failed = (rate, window)
        return held

    for rate in sizes.ramp:
        if not attempt(rate):
            break
    if failed is not None:
        for _ in range(sizes.refinements):
            low = best.rate if best is not None else 0.0
            attempt(round((low + failed[0]) / 2))
    failed_at: Row = {}
    if failed is not None:
        failed_rate, failure = failed
        failed_at = {
            "failed_at_rate": failed_rate,
            "failed_p99_ms": failure.p99_ms,
            "failed_lost": failure.lost,
            "failed_delivered_per_s": failure.delivered_per_s,
            # below the rate offered: the producers (and Redis) were the limit
            "failed_published_per_s": round(failure.published / failure.seconds, 1),
        }
    if best is not None:
        return _row(best, users=sizes.users[0], sustained_per_s=best.delivered_per_s, **failed_at)
    return {"target": rig.target.label, "sustained_per_s": 0, **failed_at}


def connections(sizes: Sizes, targets: tuple[Target, ...]) -> Iterator[Row]:
    """3. Idle connections one server process holds, RSS per connection, time to accept the
    first `accept_timed`; then a short burst of traffic proves they are all live."""
    count = sizes.idle_connections
    for target in (t for t in targets if t.has_server):
        with Rig(target, clients=2) as rig:
            users = _users(count)
            idle = rig.server_rss()
            first = rig.connect(users[: sizes.accept_timed])
            rest = rig.connect(users[sizes.accept_timed :])
            rss = rig.server_rss()
            window = rig.traffic(sizes.storm_rate, sizes.ramp_seconds)
            yield {
                "target": target.label,
                "connections": count,
                "accept_first": sizes.accept_timed,
                "seconds_to_accept_first": round(first, 2),
                "seconds_to_accept_all": round(first + rest, 2),
                "rss_mib": round(rss / 2**20, 1),
                "rss_kib_per_connection": round((rss - idle) / 1024 / count, 1),
                "burst_lost": window.lost,
                "burst_delivered": window.delivered,
            }


def scale_out(sizes: Sizes, targets: tuple[Target, ...]) -> Iterator[Row]:
    """4. 1, 2 and 4 server processes, the users split between them: total server CPU per
    delivered event, which should not grow as processes are added."""
    rate = sizes.rates[min(1, len(sizes.rates) - 1)]
    for target in (t for t in targets if t.has_server):
        for edges in sizes.edges:
            with Rig(target, servers=edges) as rig:
                rig.connect(_users(sizes.users[0]))
                yield _row(rig.traffic(rate, sizes.seconds), servers=edges, users=sizes.users[0])


def reconnect_storm(sizes: Sizes, targets: tuple[Target, ...]) -> Iterator[Row]:
    """5. While events flow, every client's TCP connection dies at once and all reconnect
    at once (Insight's with `since`): time until all are ready again, and events lost. The
    peers have no `since`; what they lose is what a deployment without a log loses."""
    for target in (t for t in targets if t.has_server):
        with Rig(target) as rig:
            rig.connect(_users(sizes.storm_users))
            traffic = rig.start(sizes.storm_rate, sizes.seconds)
            time.sleep(sizes.seconds / 3)  # the storm strikes a third of the way in
            started = time.perf_counter()
            rig.drop()
            rig.connect(_users(sizes.storm_users), since=True, concurrency=sizes.storm_users)
            caught_up = time.perf_counter() - started
            window = rig.finish(traffic)
            yield _row(
                window,
                users=sizes.storm_users,
                resumes=target.resumes,
                seconds_to_catch_up=round(caught_up, 2),
                told_to_retry=rig.retries(),
            )


def job_pipeline(sizes: Sizes, targets: tuple[Target, ...]) -> Iterator[Row]:
    """6. POST /api/v1/orders to the "Order created" toast at the user's socket, one worker
    per queue. Insight only: the peers have no job pipeline to compare."""
    if not any(t.name == "insight" for t in targets):
        return
    with job_system() as ports:
        for row in measure(ports, list(sizes.job_rates), sizes.jobs):
            yield {"target": "insight", **row}


def event_at_open(sizes: Sizes, targets: tuple[Target, ...]) -> Iterator[Row]:
    """7. An event published the instant a socket opens, against one to a socket long open:
    publish-to-frame latency. Insight only: the peers give no guarantee for that moment."""
    if any(t.name == "insight" for t in targets):
        yield connect_latency.measure(sizes.connect_rounds)


def cluster(sizes: Sizes, targets: tuple[Target, ...]) -> Iterator[Row]:
    """8. One Redis against a Redis Cluster of 3 masters with a replica each, Insight only, in
    the same run: U users (scenario 1's first size) and R events/s to random users, published
    with the key UIManager makes per call and with `idempotency_key=` (and, where the setting
    exists, with EVENTS_MIN_REPLICAS=1 on the cluster); then scenario 2's ramp. The edge and
    the producers are given one node's URL. Redis CPU is summed over every node, replicas
    included; `masters_cpu` leaves the replicas out."""
    if not any(t.name == "insight" for t in targets):
        return
    yield from _against(sizes, "single", None)
    # The default node timeout (15 s), not the tests' 2 s: no failover under a busy machine.
    with running_cluster(node_timeout_ms=15_000) as nodes:
        yield from _against(sizes, "cluster 3+3", nodes)


def _against(sizes: Sizes, redis: str, nodes: LocalCluster | None) -> Iterator[Row]:
    """Scenario 8 on one Redis (`nodes` None) or on the cluster; `redis` names it in the rows."""
    users, rate = sizes.users[0], sizes.rates[min(1, len(sizes.rates) - 1)]
    insight = Target("insight")
    windows = [  # (producer, setup, how the producer publishes)
        ("per-call key", redis, insight),
        ("idempotency_key=", redis, replace(insight, idempotency_keys=True)),
    ]
    if nodes is not None and "events_min_replicas" in Settings.model_fields:
        waiting = replace(insight, min_replicas=1)
        windows.append(("per-call key", f"{redis}, EVENTS_MIN_REPLICAS=1", waiting))
    with Rig(insight, cluster=nodes) as rig:
        rig.connect(_users(users))
        for producer, setup, target in windows:
            window = rig.traffic(rate, sizes.seconds, producer=target)
            yield _row(window, measure=f"{users} users, {rate}/s", producer=producer, redis=setup)
        highest = {"measure": f"{users} users, highest rate", "producer": "per-call key"}
        yield {**_highest(rig, sizes), **highest, "redis": redis}


def server_api_calls(sizes: Sizes, targets: tuple[Target, ...]) -> Iterator[Row]:
    """9. One HTTP publish and one presence read through the job API, against UIManager's
    direct publish and presence read, in the same run: p50/p99 latency and CPU per call.
    Insight only (and at the baseline commit, if measured): the peers have no server API to
    compare."""
    for target in targets:
        if target.name == "insight":
            yield from server_api.measure(sizes.server_api_calls, target=target)


Scenario = Callable[[Sizes, tuple[Target, ...]], Iterator[Row]]
SCENARIOS: dict[str, Scenario] = {
    "targeted_push": targeted_push,
    "highest_rate": highest_rate,
    "connections": connections,
    "scale_out": scale_out,
    "reconnect_storm": reconnect_storm,
    "job_pipeline": job_pipeline,
    "event_at_open": event_at_open,
    "cluster": cluster,
    "server_api": server_api_calls,
    # Proof under churn (issue 20); each module's docstring says what is measured and why.
    "jitter": lambda sizes, targets: churn.jitter(sizes.churn, targets),
    "rolling_deploy": lambda sizes, targets: churn.rolling_deploy(sizes.churn, targets),
    "large_replay": lambda sizes, targets: large_replay.large_replay(sizes.replay, targets),
    "sse": sse_against_websocket,
    "blocked_page": lambda sizes, targets: blocked_page.measure(sizes.page_rounds),
    "broadcast": lambda sizes, targets: broadcast.broadcast(sizes.broadcast, targets),
}
