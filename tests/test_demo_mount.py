"""The demo is mounted on the edge only when it is on: its pages, config, tokens and files are
served then, and 404 otherwise, while the product's client at /static is served either way."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli.local_redis import LocalRedis
from core.security import verify_token
from tests.harness import ROOT, Edge, base_env, settings_for, start_edge

DEMO_STATIC = ROOT / "demo" / "static"
DEMO_FILES = sorted(path.name for path in DEMO_STATIC.iterdir())
PAGES = ("/", "/orders")


@pytest.fixture(scope="module")
def demo_on(redis_server: LocalRedis, artifacts: Path) -> Iterator[Edge]:
    edge = start_edge(redis_server.url, artifacts, DEMO_ENABLED="true")
    yield edge
    edge.stop()


@pytest.fixture(scope="module")
def demo_off(redis_server: LocalRedis, artifacts: Path) -> Iterator[Edge]:
    edge = start_edge(redis_server.url, artifacts, DEMO_ENABLED="false")
    yield edge
    edge.stop()


def get(edge: Edge, path: str) -> httpx.Response:
    return httpx.get(edge.http_url + path, timeout=5)


def post_token(edge: Edge, user: str) -> httpx.Response:
    return httpx.post(f"{edge.http_url}/demo/token", json={"user": user}, timeout=5)


def test_an_edge_with_the_demo_serves_its_pages_config_and_files(demo_on: Edge) -> None:
    for page in PAGES:
        response = get(demo_on, page)
        assert response.status_code == 200, page
        assert response.headers["content-type"].startswith("text/html")
    config = get(demo_on, "/demo/config").json()
    assert [user["id"] for user in config["users"]] == ["alice", "bob", "carol", "dave"]
    for name in DEMO_FILES:
        response = get(demo_on, f"/demo/static/{name}")
        assert response.status_code == 200, name
        assert response.content == (DEMO_STATIC / name).read_bytes()
    assert get(demo_on, "/static/insight.js").status_code == 200


def test_the_demo_mints_tokens_for_its_cast_only(demo_on: Edge, redis_server: LocalRedis) -> None:
    issued = post_token(demo_on, "carol")
    assert issued.status_code == 200
    identity = verify_token(issued.json()["token"], settings_for(redis_server.url))
    assert (identity.user_id, identity.business_id, identity.name) == ("carol", "globex", "Carol")
    assert post_token(demo_on, "mallory").status_code == 422


def test_every_file_the_demo_pages_load_is_served(demo_on: Edge) -> None:
    """The pages and scripts name their files by absolute path: each one resolves."""
    texts = [get(demo_on, page).text for page in PAGES]
    texts += [(DEMO_STATIC / name).read_text() for name in DEMO_FILES if name.endswith(".js")]
    referenced = {
        path for text in texts for path in re.findall(r'"(/(?:demo/)?static/[^"]+)"', text)
    }
    assert "/demo/static/demo.js" in referenced
    assert "/static/insight.js" in referenced
    for path in sorted(referenced):
        assert get(demo_on, path).status_code == 200, path


def test_an_edge_without_the_demo_answers_404_for_all_of_it(demo_off: Edge) -> None:
    for path in (*PAGES, "/demo/config", *(f"/demo/static/{name}" for name in DEMO_FILES)):
        assert get(demo_off, path).status_code == 404, path
    assert post_token(demo_off, "alice").status_code == 404
    client = get(demo_off, "/static/insight.js")
    assert client.status_code == 200
    assert client.content == (ROOT / "edge" / "static" / "insight.js").read_bytes()


@pytest.mark.parametrize(("enabled", "imported"), [("false", False), ("true", True)])
def test_the_edge_imports_the_demo_package_only_when_it_is_on(
    redis_server: LocalRedis, enabled: str, imported: bool
) -> None:
    probe = "import sys, edge.app; print('demo' in sys.modules)"
    env = base_env(redis_server.url, DEMO_ENABLED=enabled)
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(imported)


def test_by_default_the_demo_is_on_in_development_only() -> None:
    for environment, on in (("development", True), ("test", False), ("production", False)):
        assert settings_for("redis://unused", environment=environment).demo_on is on
    assert settings_for("redis://unused", demo_enabled=True).demo_on
