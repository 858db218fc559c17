"""The benchmark harness itself: `make bench` figures are only worth quoting if the harness
counts correctly. A tiny run of two scenarios, with real processes, must deliver every event
it published, and Insight must lose nothing across a reconnect storm; the churn scenarios
(jitter, rolling deploy, large replays: issue 20) run in their quick sizes and must count
what DESIGN.md promises (every event once, in order, every client resumed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

# `python -m bench` starts every peer's processes, for half a minute or more.
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_quick_bench_run_counts_every_event_and_writes_tables_and_plots(
    tmp_path: Path,
) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--repeats", "1",
         "--scenarios", "targeted_push", "reconnect_storm",
         "--targets", "insight", "socketio", "floor", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]

    push = json.loads((tmp_path / "targeted_push.json").read_text())
    assert {row["target"] for row in push["runs"]} == {"insight", "socketio", "floor"}
    for row in push["runs"]:
        assert row["published"] > 0
        assert row["delivered"] == row["published"], row
        assert (row["lost"], row["misrouted"], row["duplicated"]) == (0, 0, 0), row
        assert row["p50_ms"] is not None
    insight = next(row for row in push["runs"] if row["target"] == "insight")
    assert insight["server_cpu_us_per_event"] > 0
    # the kernel's part of the edge's CPU (CPU times tick by 10 ms: a tiny run's may read 0),
    # and how often its loop woke: about once an event (a few more for a short run's timers)
    assert 0 <= insight["server_kernel_us_per_event"] <= insight["server_cpu_us_per_event"]
    assert 0 < insight["server_wakeups_per_event"] < 5
    floor = next(row for row in push["runs"] if row["target"] == "floor")
    assert floor["server_kernel_us_per_event"] is None  # no server process to measure
    assert insight["rss_kib_per_connection"] is not None

    storm = json.loads((tmp_path / "reconnect_storm.json").read_text())
    resumed = next(row for row in storm["runs"] if row["target"] == "insight")
    assert resumed["published"] > 0
    assert (resumed["lost"], resumed["duplicated"]) == (0, 0), resumed

    table = (tmp_path / "targeted_push.md").read_text()
    assert "| insight |" in table
    assert "x) |" in table  # the peers' figures carry ratios to Insight's
    for name in ("targeted_push", "reconnect_storm"):
        assert (tmp_path / f"{name}.png").read_bytes().startswith(b"\x89PNG")


def test_a_quick_cluster_run_compares_one_redis_with_a_cluster(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--repeats", "1", "--scenarios", "cluster",
         "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]

    rows = json.loads((tmp_path / "cluster.json").read_text())["runs"]
    assert {row["redis"].split(",")[0] for row in rows} == {"single", "cluster 3+3"}
    for row in rows:
        assert row["published"] > 0
        assert row["delivered"] == row["published"], row
        assert (row["lost"], row["misrouted"], row["duplicated"]) == (0, 0, 0), row
    on_cluster = [row for row in rows if row["redis"] != "single"]
    assert all(row["busiest_master_commands_pct"] for row in on_cluster)
    assert "x) |" in (tmp_path / "cluster.md").read_text()  # ratios to the single Redis
    assert (tmp_path / "cluster.png").read_bytes().startswith(b"\x89PNG")


def _quick(scenario: str, out: Path) -> list[dict[str, Any]]:
    """One quick run of `scenario` against Insight; the rows it wrote."""
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--repeats", "1", "--scenarios", scenario,
         "--targets", "insight", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert (out / f"{scenario}.png").read_bytes().startswith(b"\x89PNG")
    rows: list[dict[str, Any]] = json.loads((out / f"{scenario}.json").read_text())["runs"]
    return rows


def test_a_quick_jitter_run_counts_every_event_once_in_order_across_kills(tmp_path: Path) -> None:
    rows = _quick("jitter", tmp_path)

    measured = next(row for row in rows if row["source"] == "measured")
    assert measured["published"] > 0
    assert measured["delivered_pct"] == 100, measured
    assert (measured["lost"], measured["duplicated"], measured["misrouted"]) == (0, 0, 0)
    assert (measured["out_of_order"], measured["gaps"]) == (0, 0), measured
    assert measured["killed"] == measured["reconnects"] > 0  # only the client killed sockets
    assert measured["with_missed"] > 0
    assert measured["replay_p99_s"] is not None
    assert measured["connected_at_end"] == measured["clients"]
    quoted = [row for row in rows if row["source"] != "measured"]
    assert {row["target"] for row in quoted} >= {"AnyCable (published)"}
    assert all("not measured" in row["source"] for row in quoted)
    assert "x) |" in (tmp_path / "jitter.md").read_text()  # published figures as ratios


def test_a_quick_rolling_deploy_moves_every_client_and_loses_nothing(tmp_path: Path) -> None:
    (row,) = _quick("rolling_deploy", tmp_path)

    assert row["published"] > 0
    assert row["deploy_within_traffic"], row
    assert (row["lost"], row["duplicated"], row["out_of_order"], row["gaps"]) == (0, 0, 0, 0)
    assert len(row["steps"]) == row["edges"] == 2
    # Each edge stopped had clients, and every one of them came back on another socket.
    assert all(step["on_edge"] > 0 for step in row["steps"]), row["steps"]
    assert row["moved"] == row["on_stopped_edges"], row
    assert row["connected_at_end"] == row["clients"]
    assert row["resume_p99_s"] is not None
    assert row["outage_p99_s"] >= row["resume_p50_s"]


def test_a_quick_large_replay_run_compares_latency_with_and_without_replays(
    tmp_path: Path,
) -> None:
    baseline, replayed = _quick("large_replay", tmp_path)

    assert baseline["measure"] == "no replays"
    assert replayed["measure"].startswith(f"{replayed['sockets']} stalled resumes")
    for row in (baseline, replayed):
        assert row["published"] > 0
        assert row["lost"] == 0, row
        assert row["p99_ms"] is not None
        assert row["commit"]
    assert replayed["rss_peak_mib"] >= replayed["rss_before_mib"] > 0
    assert replayed["rss_after_mib"] > 0
    assert replayed["no_first_frame"] + sum(replayed["first_codes"].values()) == 20
    assert isinstance(replayed["edge_closes_1013"], int)
    assert "x) |" in (tmp_path / "large_replay.md").read_text()  # ratios to no replays


def test_the_app_event_bench_prints_each_kind_with_its_comparisons_ratio() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench.app_events", "--events", "20", "--rounds", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    rows = {row["kind"]: row for row in map(json.loads, run.stdout.splitlines())}
    assert set(rows) == {"ui_toast", "bench_notice", "ui_update, dict", "ui_update, JobProgress"}
    assert rows["bench_notice"]["compared_with"] == "ui_toast"
    assert rows["ui_update, JobProgress"]["compared_with"] == "ui_update, dict"
    for row in rows.values():
        assert row["cpu_us_per_publish"] > 0
        assert (row["ratio"] is None) == (row["compared_with"] is None)
        assert row["ratio"] is None or row["ratio"] > 0


def test_a_baseline_commit_runs_in_the_same_run_and_insights_figures_are_read_against_it(
    tmp_path: Path,
) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--repeats", "1",
         "--scenarios", "targeted_push", "--targets", "insight", "--baseline", "HEAD",
         "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    push = json.loads((tmp_path / "targeted_push.json").read_text())
    rows = {row["target"]: row for row in push["runs"]}
    assert set(rows) == {"insight", f"insight@{commit}"}
    for row in rows.values():
        assert row["delivered"] == row["published"] > 0, row
        assert (row["lost"], row["misrouted"], row["duplicated"]) == (0, 0, 0), row
    table = (tmp_path / "targeted_push.md").read_text()
    [ours] = [line for line in table.splitlines() if line.startswith("| 50 | 200 | insight |")]
    assert "x) |" in ours  # Insight's figures carry their ratio to the baseline's
    assert f"to insight@{commit} (the same run)" in table


def test_the_publish_cost_bench_measures_the_tree_and_a_baseline_on_both_redis_kinds() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench.publish_cost", "--baseline", "HEAD", "--events", "50",
         "--rounds", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert [row["redis"] for row in rows] == ["one Redis", "cluster 3+3"]
    for row in rows:
        baseline = next(key for key in row if key.endswith("_cpu_us") and key != "tree_cpu_us")
        assert row["tree_cpu_us"] > 0
        assert row[baseline] > 0
        low, high = row["ratio_range"]
        assert 0 < low <= row["ratio"] <= high


def test_a_quick_broadcast_reaches_every_socket_once_on_insight_and_broadcaster(
    tmp_path: Path,
) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--repeats", "1", "--scenarios", "broadcast",
         "--targets", "insight", "broadcaster", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads((tmp_path / "broadcast.json").read_text())["runs"]
    assert [row["target"] for row in rows] == ["insight", "broadcaster"]
    for row in rows:
        assert (row["delivered_pct"], row["duplicated"]) == (100, 0), row
        assert 0 < row["first_frame_ms"] <= row["frame_p50_ms"] <= row["last_frame_ms"], row
    assert "| broadcaster |" in (tmp_path / "broadcast.md").read_text()


def test_the_connection_memory_probe_reports_what_idle_sockets_add_by_file_and_line() -> None:
    command = [sys.executable, "-m", "bench.connection_memory", "--connections", "100"]
    run = subprocess.run(
        [*command, "--depth", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    total, *lines = run.stdout.splitlines()
    assert total.startswith("total ")
    assert int(total.split()[1]) > 1000  # an open socket costs kilobytes, not nothing
    files, sites = lines[1 : lines.index("by line:")], lines[lines.index("by line:") + 1 :]
    assert lines[0] == "by file:"
    assert any(line.rstrip().endswith(".py") for line in files), files
    assert any("websockets" in site or "edge/" in site for site in sites), sites
    assert any(" <- " in site for site in sites), sites  # each line's callers, to 3 deep
