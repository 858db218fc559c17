"""The benchmark harness itself: `make bench` figures are only worth quoting if the harness
counts correctly. A tiny run of two scenarios, with real processes, must deliver every event
it published, and Insight must lose nothing across a reconnect storm."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
