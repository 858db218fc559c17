"""How long a page behind a proxy that refuses WebSockets waits for its first event, against
the same page whose WebSocket opens: Chromium loads insight.js (default options) through a
local proxy that refuses every upgrade (tests/browser/refusing_proxy.py), so the client tries
the WebSocket `fallbackAfter` times, then buys a ticket and opens an SSE stream. Events are
published to the page's user every PUBLISH_EVERY seconds from the moment the client starts; the
figure is the time from `connectUIEvents` to the first one shown, and to `open`.

    .venv/bin/python -m bench --scenarios blocked_page
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import start_edge, token
from cli.local_redis import LocalRedis, free_port
from realtime.broker.topology import sync_client
from realtime.eventlog import EventLog
from realtime.publisher import UIManager
from realtime.recipients import Recipient
from realtime.settings import EventsSettings
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.browser.refusing_proxy import refusing_proxy

Row = dict[str, Any]
PUBLISH_EVERY = 0.02
PAGE_WAIT = 30.0

SCRIPT = """
import { connectUIEvents } from "/static/insight.js";
window.timing = {};
const started = performance.now();
connectUIEvents({
  url: `ws://${location.host}/api/v1/insight`,
  token: TOKEN,
  storage: null,
  onStatus: (status) => {
    if (status === "open" && !window.timing.open) window.timing.open = performance.now() - started;
  },
  onToast: () => {
    if (!window.timing.first) window.timing.first = performance.now() - started;
  },
});
"""


def _first_event(page: Any, origin: str, user: str, ui: UIManager) -> tuple[float, float]:
    """(ms to `open`, ms to the first event) of one page load at `origin`."""
    page.goto(f"{origin}/healthz")
    page.add_script_tag(type="module", content=SCRIPT.replace("TOKEN", json.dumps(token(user))))
    deadline = time.monotonic() + PAGE_WAIT
    while time.monotonic() < deadline:
        ui.show_toast("First", "event", "info")
        timing = page.evaluate("window.timing || {}")
        if "first" in timing:
            return float(timing.get("open", timing["first"])), float(timing["first"])
        time.sleep(PUBLISH_EVERY)  # a steady trickle of events, as a busy app sends
    raise TimeoutError(f"no event within {PAGE_WAIT} s at {origin}")


def measure(rounds: int) -> Iterator[Row]:
    """A private Redis and edge; `rounds` page loads direct and through the refusing proxy."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as scratch:
        server = LocalRedis(free_port(), Path(scratch) / "redis").start()
        port = free_port()
        edge = start_edge(port, server.url)
        log = EventLog(sync_client(server.url), EventsSettings(redis_url=server.url).retention)
        try:
            with refusing_proxy(port) as proxy, sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                origins = {"websocket": f"http://127.0.0.1:{port}", "blocked": proxy.origin}
                for path, origin in origins.items():
                    opened, first = [], []
                    for round_ in range(rounds):
                        user = f"page-{path}-{round_}-{time.time_ns()}"
                        page = browser.new_page()
                        open_ms, first_ms = _first_event(
                            page, origin, user, UIManager(Recipient.user(user), log)
                        )
                        page.close()
                        opened.append(open_ms)
                        first.append(first_ms)
                    yield {
                        "target": "insight",
                        "page": path,
                        "rounds": rounds,
                        "open_ms": round(statistics.median(opened), 1),
                        "first_event_ms": round(statistics.median(first), 1),
                    }
                browser.close()
        finally:
            edge.kill()
            edge.wait(10)
            server.stop()
