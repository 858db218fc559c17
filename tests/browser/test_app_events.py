"""In Chromium, insight.js hands the application's own events to the page as the seed's
listeners get theirs: an event of type `x_y` becomes the window CustomEvent `x-y` with the
frame as `detail`; a frame of a type it does not know is ignored with a debug line, and the
events after it still arrive. A real edge reading the test application's INSIGHT_EVENT_MODULES,
the session's Redis, a page on an origin the edge allows."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, expect

from cli.local_redis import LocalRedis
from realtime import PublishOptions, UIManager
from realtime.publisher import default_event_log
from realtime.recipients import Recipient
from tests.app_events import DECLARED, declared, declaring
from tests.browser.test_cross_origin import StaticSite, static_site
from tests.harness import Edge, start_edge, unique

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>An app with events of its own</title>
<p id="status">loading</p>
<ol id="received"></ol>
<script type="module">
  import { connectUIEvents } from "%(edge)s/static/insight.js";

  const show = (name) => (event) => {
    const item = document.createElement("li");
    item.textContent = name + " " + JSON.stringify(event.detail);
    document.getElementById("received").append(item);
  };
  for (const name of ["cart-updated", "ui-confetti", "ui-update"]) {
    window.addEventListener(name, show(name));
  }
  connectUIEvents({
    url: "%(socket)s",
    token: %(token)s,
    storage: null,
    onStatus: (status) => { document.getElementById("status").textContent = status; },
  });
</script>
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaticSite]:
    with static_site(tmp_path_factory.mktemp("app-events-site")) as served:
        yield served


@pytest.fixture(scope="module")
def app_edge(redis_server: LocalRedis, artifacts: Path, site: StaticSite) -> Iterator[Edge]:
    edge = start_edge(
        redis_server.url, artifacts, ALLOWED_ORIGINS=site.origin, INSIGHT_EVENT_MODULES=DECLARED
    )
    yield edge
    edge.stop()


def test_an_app_event_is_a_window_custom_event_and_an_unknown_type_is_ignored(
    context: BrowserContext, site: StaticSite, app_edge: Edge, token: Callable[..., str]
) -> None:
    user = unique("app-events")
    values = {
        "edge": app_edge.http_url,
        "socket": app_edge.ws_url,
        "token": json.dumps(token(user)),
    }
    (site.root / "app.html").write_text(PAGE % values)
    page = context.new_page()
    debug: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "debug":
            debug.append(message.text)

    page.on("console", on_console)
    page.goto(f"{site.origin}/app.html")
    expect(page.locator("#status")).to_have_text("open")

    with declaring(DECLARED):
        ui = UIManager.for_user(user).with_context(jobId="j1")
        ui.publish(declared.CartUpdated(cartId="c1", items=3))
        # Frames no producer of this release makes (Insight's validation refuses them): a control
        # frame of a later edge, and a type of no declared shape. Written to the log directly.
        for body in ('{"type":"insight_later"}', '{"type":"Not A Type"}'):
            default_event_log().append(Recipient.user(user), body, 60, PublishOptions())
        ui.publish(declared.Confetti(colors=["gold"]))
        ui.update_ui({"type": "inventory_changed", "sku": "A", "left": 2})

    received = page.locator("#received li")
    expect(received).to_have_count(3)
    texts = received.all_inner_texts()
    assert [text.split(" ", 1)[0] for text in texts] == ["cart-updated", "ui-confetti", "ui-update"]
    cart = json.loads(texts[0].split(" ", 1)[1])
    assert {k: v for k, v in cart.items() if k != "id"} == {
        "jobId": "j1", "type": "cart_updated", "cartId": "c1", "items": 3
    }  # fmt: skip
    assert cart["id"]  # the frame, cursor included, as detail
    assert json.loads(texts[2].split(" ", 1)[1]) == {
        "type": "inventory_changed",
        "sku": "A",
        "left": 2,
    }
    ignored = [line for line in debug if "ignored a frame of unknown type" in line]
    assert len(ignored) == 2, debug
    assert "insight_later" in ignored[0]
    assert "Not A Type" in ignored[1]
