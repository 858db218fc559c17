"""Producer CPU per publish: the tree's `UIManager` against another commit's, in the same run.

What a Celery task pays for each `show_toast`, as issue 25's goal 5 states it (at most
100 µs, on one Redis and on a 3+3 cluster). Each round starts one fresh process per side, in
turn (tree, baseline, tree, ...), which publishes `--events` toasts to 1,000 users, one after
the other, and reports the CPU it spent in the loop (time.process_time, user and system: the
socket writes are most of a publish). Rounds alternate so that the machine's drift touches
both sides alike; the figures are medians over the rounds, and the ratio is taken round by
round.

    .venv/bin/python -m bench.publish_cost --baseline 51f00d9 --events 5000 --rounds 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.baseline import ROOT, checkout, use_code
from cli.local_redis import LocalRedis, free_port
from tests.local_cluster import running_cluster

USERS = 1_000
WARM_UP = 300


def _publish(events: int) -> dict[str, float]:
    """In a worker process: publish `events` toasts and measure the loop."""
    from realtime import UIManager

    for n in range(WARM_UP):
        UIManager.for_user(str(n % USERS)).show_toast("Warm", "up", "info")
    cpu, wall = time.process_time(), time.perf_counter()
    for n in range(events):
        UIManager.for_user(str(n % USERS)).show_toast("Order created", f"Order #{n}", "success")
    return {
        "cpu_us": (time.process_time() - cpu) / events * 1e6,
        "wall_us": (time.perf_counter() - wall) / events * 1e6,
    }


def _worker(code: str, url: str, events: int) -> int:
    if code:
        use_code(Path(code))
    os.environ["EVENTS_REDIS_URL"] = url
    print(json.dumps(_publish(events)))
    return 0


def _round(code: Path | None, url: str, events: int) -> dict[str, float]:
    command = [sys.executable, "-m", "bench.publish_cost", "--worker", str(code or ""), url]
    command += ["--events", str(events)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"publishing worker failed: {done.stderr[-2000:]}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


@contextmanager
def _servers(directory: Path) -> Iterator[list[tuple[str, str]]]:
    """One Redis and a 3+3 cluster, as (name, url)."""
    single = LocalRedis(free_port(), directory / "redis").start()
    try:
        with running_cluster(node_timeout_ms=15_000) as cluster:
            yield [("one Redis", single.url), ("cluster 3+3", cluster.url)]
    finally:
        single.stop()


def compare(baseline: str, events: int, rounds: int) -> list[dict[str, object]]:
    commit, code = checkout(baseline)
    rows: list[dict[str, object]] = []
    folder = tempfile.TemporaryDirectory(prefix="publish-cost-")
    with folder as directory, _servers(Path(directory)) as servers:
        for name, url in servers:
            tree, base = [], []
            for _ in range(rounds):
                tree.append(_round(None, url, events))
                base.append(_round(code, url, events))
            rows.append(_row(name, commit, tree, base))
    return rows


def _row(
    name: str, commit: str, tree: list[dict[str, float]], base: list[dict[str, float]]
) -> dict[str, object]:
    ratios = [t["cpu_us"] / b["cpu_us"] for t, b in zip(tree, base, strict=True)]
    return {
        "redis": name,
        "tree_cpu_us": round(statistics.median(t["cpu_us"] for t in tree), 1),
        f"{commit}_cpu_us": round(statistics.median(b["cpu_us"] for b in base), 1),
        "ratio": round(statistics.median(ratios), 3),
        "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "tree_wall_us": round(statistics.median(t["wall_us"] for t in tree), 1),
        f"{commit}_wall_us": round(statistics.median(b["wall_us"] for b in base), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="HEAD", help="the commit to compare against")
    parser.add_argument("--events", type=int, default=5_000, help="publishes per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--worker", nargs=2, metavar=("CODE", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args.worker[0], args.worker[1], args.events)
    for row in compare(args.baseline, args.events, args.rounds):
        print(json.dumps(row))
    print(
        "CPU per publish of the producer process (user + system), median of the rounds; "
        "ratio: the tree's over the baseline's, round by round (median, and its range)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
