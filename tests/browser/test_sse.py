"""Server-Sent Events in Chromium: a page on another origin opens `EventSource` with a ticket;
insight.js falls back to SSE by itself behind a proxy that refuses WebSocket upgrades (toasts,
`ui-update` events, a redirect); and a page kept open past several token lifetimes on SSE
receives every event once, in order, as it reopens its stream with fresh tickets."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from cli.local_redis import LocalRedis
from realtime import UIManager
from tests.browser.refusing_proxy import RefusingProxy, refusing_proxy
from tests.browser.test_cross_origin import StaticSite, static_site
from tests.harness import Edge, start_edge, unique

TOKEN_SECONDS = 5
OPEN_FOR_SECONDS = 16  # three token lifetimes and more

EVENT_SOURCE_PAGE = """<!doctype html>
<meta charset="utf-8">
<p id="status">loading</p>
<ul id="toasts"></ul>
<script type="module">
  const edge = %(edge)s;
  const answer = await fetch(`${edge}/api/v1/insight/tickets`, {
    method: "POST", headers: { Authorization: `Bearer ${%(token)s}` },
  });
  const { ticket } = await answer.json();
  const source = new EventSource(`${edge}/api/v1/insight/sse?ticket=${ticket}`);
  source.onmessage = (message) => {
    const frame = JSON.parse(message.data);
    if (frame.type === "insight_ready") document.getElementById("status").textContent = "open";
    if (frame.type !== "ui_toast") return;
    const item = document.createElement("li");
    item.textContent = frame.title;
    document.getElementById("toasts").append(item);
  };
</script>
"""

CLIENT_SCRIPT = """
import { connectUIEvents } from "/static/insight.js";
window.seen = { statuses: [], toasts: [], updates: [], tokens: 0 };
window.addEventListener("ui-update", (event) => window.seen.updates.push(event.detail));
window.handle = connectUIEvents({
  url: `ws://${location.host}/api/v1/insight`,
  storage: null,
  minDelayMs: 50,
  onStatus: (status, detail) => window.seen.statuses.push(`${status}:${detail.transport}`),
  onToast: (toast) => window.seen.toasts.push(toast.title),
  ...OPTIONS,
});
"""


def client_script(options: str) -> str:
    return CLIENT_SCRIPT.replace("OPTIONS", options)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaticSite]:
    with static_site(tmp_path_factory.mktemp("sse-site")) as served:
        yield served


@pytest.fixture(scope="module")
def sse_edge(redis_server: LocalRedis, artifacts: Path, site: StaticSite) -> Iterator[Edge]:
    edge = start_edge(redis_server.url, artifacts, ALLOWED_ORIGINS=site.origin, DEMO_ENABLED="true")
    yield edge
    edge.stop()


@pytest.fixture(scope="module")
def proxy(sse_edge: Edge) -> Iterator[RefusingProxy]:
    with refusing_proxy(sse_edge.port) as running:
        yield running


def test_a_page_on_another_origin_opens_event_source_with_a_ticket_and_gets_toasts(
    context: BrowserContext, site: StaticSite, sse_edge: Edge, token: Callable[..., str]
) -> None:
    user = unique("sse-page")
    (site.root / "sse.html").write_text(
        EVENT_SOURCE_PAGE
        % {"edge": json.dumps(sse_edge.http_url), "token": json.dumps(token(user))}
    )
    page = context.new_page()
    page.goto(f"{site.origin}/sse.html")
    expect(page.locator("#status")).to_have_text("open")
    ui = UIManager.for_user(user)
    ui.show_toast("First", "over SSE", "success")
    ui.show_toast("Second", "over SSE", "info")
    expect(page.locator("#toasts li")).to_have_text(["First", "Second"])


def test_insight_js_falls_back_to_sse_where_websockets_are_refused(
    context: BrowserContext, proxy: RefusingProxy, token: Callable[..., str]
) -> None:
    user = unique("blocked")
    page = context.new_page()
    page.goto(f"{proxy.origin}/healthz")  # the page's origin is the proxy's
    page.add_script_tag(
        type="module", content=client_script(f"{{ token: {json.dumps(token(user))} }}")
    )
    page.wait_for_function("window.seen && window.seen.statuses.includes('open:sse')")
    statuses = page.evaluate("window.seen.statuses")
    assert "open:websocket" not in statuses
    assert proxy.refused >= 2  # the WebSocket was tried, and refused, before the fallback
    ui = UIManager.for_user(user)
    ui.show_toast("Order created", "through a proxy that refuses WebSockets", "success")
    ui.update_ui({"type": "cart_totals", "items": 3})
    page.wait_for_function("window.seen.toasts.length === 1 && window.seen.updates.length === 1")
    assert page.evaluate("window.seen.updates") == [{"type": "cart_totals", "items": 3}]
    with page.expect_navigation():
        ui.redirect("/healthz?redirected=1")
    assert page.url.endswith("/healthz?redirected=1")


def test_a_page_on_sse_keeps_its_events_past_several_token_lifetimes(
    browser: Browser, sse_edge: Edge
) -> None:
    get_token = (
        """{ transport: "sse", getToken: async () => {
          const answer = await fetch("/demo/token", {
            method: "POST", headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ user: "alice", ttl: TOKEN_SECONDS }),
          });
          window.seen.tokens += 1;
          return (await answer.json()).token;
        } }"""
    ).replace("TOKEN_SECONDS", str(TOKEN_SECONDS))
    page = browser.new_page()
    page.goto(f"{sse_edge.http_url}/healthz")
    page.add_script_tag(type="module", content=client_script(get_token))
    page.wait_for_function("window.seen && window.seen.statuses.includes('open:sse')")
    opened = time.monotonic()
    ui = UIManager.for_user("alice")
    sent: list[str] = []
    while time.monotonic() - opened < OPEN_FOR_SECONDS:
        sent.append(f"toast {len(sent)}")
        ui.show_toast(sent[-1], "while tokens come and go", "info")
        page.wait_for_timeout(400)  # a steady trickle across the renewals is the scenario
    page.wait_for_function(f"window.seen.toasts.length >= {len(sent)}", timeout=15_000)
    page.wait_for_timeout(500)  # nothing more may arrive: a duplicate would, by now
    assert page.evaluate("window.seen.toasts") == sent
    assert page.evaluate("window.seen.tokens") >= 3  # renewed: no token outlived its exp
    assert all(status.endswith(":sse") for status in page.evaluate("window.seen.statuses"))
    page.close()
