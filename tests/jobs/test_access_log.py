"""The job API's access log: one JSON line per request, with credentials redacted, unless the
operator turns it off with `uvicorn --no-access-log` (the app's own logging set-up used to
turn it back on, a log line and its redaction for every request)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli.local_redis import LocalRedis, free_port
from tests.harness import ServerProcess, base_env, unique
from tests.stack import fresh_database


class QuietApi(ServerProcess):
    def command(self) -> list[str]:
        return [*super().command(), "--no-access-log"]


@pytest.fixture(scope="module")
def database(artifacts: Path) -> Iterator[str]:
    with fresh_database("sqlite", artifacts) as url:
        yield url


def access_lines(api: ServerProcess) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in api.log_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line["logger"] == "uvicorn.access"]


@pytest.mark.parametrize("quiet", [False, True], ids=["default", "no-access-log"])
def test_the_access_log_is_json_and_redacted_and_off_when_asked(
    quiet: bool, redis_server: LocalRedis, database: str, artifacts: Path
) -> None:
    port = free_port()
    served_by = QuietApi if quiet else ServerProcess
    env = base_env(redis_server.url, DATABASE_URL=database)
    api = served_by("api.main:app", port, env, artifacts / f"api-access-{port}.log").start()
    secret = unique("secret")
    try:
        assert httpx.get(f"{api.http_url}/healthz?token={secret}", timeout=5).status_code == 200
    finally:
        api.stop()
    lines = access_lines(api)
    if quiet:
        assert lines == []
    else:
        assert any("/healthz?token=[redacted]" in str(line["msg"]) for line in lines), lines
    assert secret not in api.log_text()
