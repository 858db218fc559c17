"""Shared fixtures: a private Redis server, a running edge, tokens, and the publisher.

The tests never touch a Redis they did not start: a session whose tests need one starts its
own server on a free port, and the publisher in this process is pointed at it through the
environment, exactly as a Celery worker would be configured. Tests that need no Redis (the
fast tier's unit tests) start none: see tests/tiers.py.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from cli.local_redis import LocalRedis, free_port
from core.config import Settings, get_settings
from realtime.publisher import event_log_of_process
from realtime.settings import events_settings
from tests.harness import Edge, ServerProcess, settings_for, start_edge, token_for
from tests.stack import fresh_database, start_api

pytest_plugins = [
    "tests.cluster_fixtures",  # redis_cluster, fresh_cluster
    "tests.tiers",  # the markers tests get from their fixtures; no process in the fast tier
]


# `make test-all` runs the modules on parallel workers (pytest-xdist, --dist loadfile): each
# module on one worker, except that modules sharing one costly session fixture share a worker
# too, so that it is built once. (xdist's own groups, --dist loadgroup, are ignored on pytest
# 9.2 with pytest-xdist 3.8: its issue 1386.)
SHARED_WORKER = {
    "tests/browser/test_nextjs.py": "the Next.js example's build",
    "tests/browser/test_nextjs_jobs.py": "the Next.js example's build",
}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class ByModule(LoadFileScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return SHARED_WORKER.get(module, module)

    return ByModule(config, log)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


# Where this process publishes while no test has asked for Redis: nothing listens there, so
# a test that publishes without using `redis_server` fails at once, and never writes to a
# Redis it did not start (a developer's, on the default localhost:6379).
NO_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture(scope="session", autouse=True)
def _test_settings() -> Iterator[None]:
    """Configure this process like a worker, settings from the environment: the tests' secrets
    for every test (it starts nothing), and a Redis only once `redis_server` runs."""
    with settings_environment(NO_REDIS):
        yield


@pytest.fixture(scope="session")
def redis_server(artifacts: Path) -> Iterator[LocalRedis]:
    """The session's private Redis. While it runs, this process publishes to it: the
    environment's REDIS_URL is its, so `UIManager.for_user(...)` with the process's default
    log writes here. Every test that touches Redis, itself or through an edge, the API or a
    stack (all of which use this fixture), gets both; a test that uses none starts no Redis."""
    server = LocalRedis(free_port(), artifacts / "redis").start()
    try:
        with settings_environment(server.url):
            yield server
    finally:
        server.stop()


@contextlib.contextmanager
def settings_environment(redis_url: str) -> Iterator[None]:
    """The tests' settings in the environment, with `redis_url` as REDIS_URL; the cached
    settings and the process's publisher connection are dropped on the way in and out."""
    saved = dict(os.environ)
    os.environ.update(settings_env(redis_url))
    get_settings.cache_clear()
    events_settings.cache_clear()
    event_log_of_process.cache_clear()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()
        events_settings.cache_clear()
        event_log_of_process.cache_clear()


def settings_env(redis_url: str) -> dict[str, str]:
    settings = settings_for(redis_url)
    return {
        "ENVIRONMENT": settings.environment,
        "REDIS_URL": redis_url,
        "JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "JWT_AUDIENCE": settings.jwt_audience or "",
        "JWT_ISSUER": settings.jwt_issuer or "",
        "STRIPE_WEBHOOK_SECRET": settings.stripe_webhook_secret.get_secret_value(),
    }


@pytest.fixture
def redis_client(redis_server: LocalRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def settings(redis_server: LocalRedis) -> Settings:
    return settings_for(redis_server.url)


@pytest.fixture(scope="session")
def edge(redis_server: LocalRedis, artifacts: Path) -> Iterator[Edge]:
    """One edge shared by tests that need nothing special from it."""
    process = start_edge(redis_server.url, artifacts)
    yield process
    process.stop()


@pytest.fixture
def edge_factory(redis_server: LocalRedis, artifacts: Path) -> Iterator[Callable[..., Edge]]:
    """Start extra edges (own settings, or to be killed); all stopped after the test."""
    started: list[Edge] = []

    def start(redis_url: str | None = None, **env: str) -> Edge:
        process = start_edge(redis_url or redis_server.url, artifacts, **env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="module")
def api(redis_server: LocalRedis, artifacts: Path) -> Iterator[ServerProcess]:
    """The job API with a server key (tests.stack.SERVER_KEY) on a database of its own, for
    one test module."""
    with fresh_database("sqlite", artifacts) as url:
        process = start_api(redis_server.url, artifacts, url)
        yield process
        process.stop()


@pytest.fixture
def token(settings: Settings) -> Callable[..., str]:
    """token(user, business=None, ttl=3600) -> a JWT the edge accepts."""

    def make(user: str, business: str | None = None, ttl: int = 3600) -> str:
        return token_for(settings, user, business, ttl)

    return make
