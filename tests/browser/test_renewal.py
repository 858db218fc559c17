"""insight.js renews its session in band: with 5-second tokens, one socket stays open and
keeps receiving for 15 seconds, three lifetimes, without a reconnect."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from cli.local_redis import LocalRedis
from realtime import UIManager
from tests.harness import Edge, start_edge

TOKEN_SECONDS = 5
OPEN_FOR_SECONDS = 15

PAGE_SCRIPT = (
    """
import { connectUIEvents } from "/static/insight.js";
window.seen = { statuses: [], tokens: 0, toasts: [] };
const url = `ws://${location.host}/api/v1/insight`;
window.handle = connectUIEvents({
  url,
  getToken: async () => {
    const answer = await fetch("/demo/token", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user: "alice", ttl: TOKEN_SECONDS }),
    });
    window.seen.tokens += 1;
    return (await answer.json()).token;
  },
  onStatus: (status) => window.seen.statuses.push(status),
  onToast: (toast) => window.seen.toasts.push(toast.title),
});
"""
).replace("TOKEN_SECONDS", str(TOKEN_SECONDS))


@pytest.fixture(scope="module")
def demo_edge(redis_server: LocalRedis, artifacts: Path) -> Iterator[Edge]:
    edge = start_edge(redis_server.url, artifacts, DEMO_ENABLED="true")
    yield edge
    edge.stop()


def test_a_page_keeps_one_socket_open_past_its_tokens_lifetimes(
    browser: Browser, demo_edge: Edge
) -> None:
    page = browser.new_page()
    page.goto(f"{demo_edge.http_url}/healthz")  # the edge's origin, for /static and /demo
    page.add_script_tag(type="module", content=PAGE_SCRIPT)
    page.wait_for_function("window.seen && window.seen.statuses.includes('open')")
    opened = time.monotonic()
    # Three token lifetimes pass; the behaviour under test is the clock itself.
    page.wait_for_timeout((OPEN_FOR_SECONDS - (time.monotonic() - opened)) * 1000)
    UIManager.for_user("alice").show_toast("Still connected", "after 15 s", "info")
    page.wait_for_function("window.seen.toasts.includes('Still connected')", timeout=10_000)
    seen = page.evaluate("window.seen")
    assert seen["statuses"] == ["connecting", "open"], "the socket dropped and came back"
    assert seen["tokens"] >= OPEN_FOR_SECONDS // TOKEN_SECONDS  # renewed in band each time
    page.close()
