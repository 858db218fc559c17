"""A real Chromium (Debian's, never a downloaded one) driving the demo page over the full stack."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from cli.local_redis import LocalRedis
from tests.browser.nextjs_app import NextApp, running_nextjs
from tests.harness import ROOT
from tests.stack import Stack, fresh_database, start_stack

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = ROOT / "test-artifacts" / "browser"
# As the machine's own probe starts it: no sandbox as root, and no calls home.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Module-scoped on purpose: Playwright's sync API runs an event loop of its own, which
    must be gone before the asyncio tests of other modules start theirs."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("INSIGHT_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing and INSIGHT_REQUIRE_BROWSER is set")
        pytest.skip(f"browser tests need {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def demo(redis_server: LocalRedis, artifacts: Path) -> Iterator[Stack]:
    """The whole system on SQLite, with an edge that serves the demo and mints demo tokens."""
    with fresh_database("sqlite", artifacts) as url:
        stack = start_stack(
            redis_server.url,
            url,
            artifacts,
            DEMO_ENABLED="true",
            INSIGHT_EVENT_MODULES="demo.events",
        )
        yield stack
        for process in (stack.edge, stack.worker, stack.api, stack.stripe):
            process.stop()
    client = redis.Redis.from_url(redis_server.url)
    client.delete("orders", "payments", "metrics", "unacked", "unacked_index")
    client.close()


@pytest.fixture(scope="session")
def nextjs(
    redis_server: LocalRedis, artifacts: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NextApp]:
    """examples/nextjs built once for every module that drives it (test_nextjs.py,
    test_nextjs_jobs.py): npm ci and next build are most of its cost. Both modules run on one
    worker under `make test-all` (tests/conftest.py, SHARED_WORKER). Its stack has a broker
    of its own (nextjs_app.py), so it may outlive the modules that use it."""
    with running_nextjs(
        redis_server.url, artifacts, tmp_path_factory.mktemp("nextjs"), SCREENSHOTS
    ) as app:
        yield app


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    ctx.set_default_timeout(15_000)
    yield ctx
    ctx.close()


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Iterator[object]:
    """screenshot(page, suffix="") keeps a PNG of the scenario under test-artifacts/browser,
    with transitions (a toast's slide-in, the progress bars) run to their end first."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page: Page, suffix: str = "") -> Path:
        path = SCREENSHOTS / f"{request.node.name}{suffix}.png"
        page.screenshot(path=str(path), animations="disabled")
        return path

    yield take
    shutil.rmtree(SCREENSHOTS / "tmp", ignore_errors=True)
