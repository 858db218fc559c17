"""The app on one origin imports the edge's client from another, as a real page does:

    import { connectUIEvents } from "http://<edge>/static/insight.js";

A module script from another origin is fetched in CORS mode, so the edge must grant the
origins of ALLOWED_ORIGINS, and only those, an Access-Control-Allow-Origin header.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, expect

from cli.local_redis import LocalRedis
from realtime import UIManager
from tests.harness import Edge, start_edge, unique

FOREIGN_ORIGIN = "http://app.example"  # not in the edge's ALLOWED_ORIGINS
Shot = Callable[..., Path]

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>An app on another origin</title>
<p id="status">loading</p>
<ul id="toasts"></ul>
<script type="module" onerror="document.getElementById('status').textContent = 'import failed'">
  import { connectUIEvents } from "%(edge)s/static/insight.js";

  connectUIEvents({
    url: "%(socket)s",
    token: %(token)s,
    storage: null,
    onStatus: (status) => { document.getElementById("status").textContent = status; },
    onToast: (toast) => {
      const item = document.createElement("li");
      item.textContent = toast.title;
      document.getElementById("toasts").append(item);
    },
  });
</script>
"""


@dataclass
class StaticSite:
    """A plain HTTP server (not Insight) serving the files of `root` on its own port."""

    root: Path
    server: ThreadingHTTPServer

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def page(self, name: str, edge: Edge, token: str) -> str:
        """Write an app page that imports the client from `edge`; its URL."""
        values = {"edge": edge.http_url, "socket": edge.ws_url, "token": json.dumps(token)}
        (self.root / name).write_text(PAGE % values)
        return f"{self.origin}/{name}"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # quiet: no request lines
        pass


@contextlib.contextmanager
def static_site(root: Path) -> Iterator[StaticSite]:
    root.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield StaticSite(root, server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def app_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaticSite]:
    """Where the app is served from: an origin the edge allows."""
    with static_site(tmp_path_factory.mktemp("app-site")) as site:
        yield site


@pytest.fixture(scope="module")
def other_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaticSite]:
    """Another origin, one the edge does not allow."""
    with static_site(tmp_path_factory.mktemp("other-site")) as site:
        yield site


@pytest.fixture(scope="module")
def edge_for_app(redis_server: LocalRedis, artifacts: Path, app_site: StaticSite) -> Iterator[Edge]:
    """An edge on its own port whose ALLOWED_ORIGINS holds the app's origin (and one more)."""
    edge = start_edge(
        redis_server.url, artifacts, ALLOWED_ORIGINS=f"{app_site.origin},https://admin.example"
    )
    yield edge
    edge.stop()


def test_a_page_on_an_allowed_origin_imports_the_client_and_receives_events(
    context: BrowserContext,
    app_site: StaticSite,
    edge_for_app: Edge,
    token: Callable[..., str],
    screenshot: Shot,
) -> None:
    user = unique("cross-origin")
    page = context.new_page()
    page.goto(app_site.page("app.html", edge_for_app, token(user)))
    expect(page.locator("#status")).to_have_text("open")  # imported, connected, live

    UIManager.for_user(user).show_toast("Order created", "Imported across origins", "success")

    expect(page.locator("#toasts li")).to_have_text(["Order created"])
    screenshot(page)


def test_a_page_on_an_origin_not_allowed_cannot_import_the_client(
    context: BrowserContext, other_site: StaticSite, edge_for_app: Edge, token: Callable[..., str]
) -> None:
    page = context.new_page()
    page.goto(other_site.page("app.html", edge_for_app, token(unique("elsewhere"))))
    expect(page.locator("#status")).to_have_text("import failed")


def test_only_allowed_origins_get_cors_headers_for_the_client(
    app_site: StaticSite, edge_for_app: Edge
) -> None:
    client_url = f"{edge_for_app.http_url}/static/insight.js"

    allowed = httpx.get(client_url, headers={"Origin": app_site.origin}, timeout=10)
    assert allowed.status_code == 200
    assert "javascript" in allowed.headers["content-type"]
    assert allowed.headers["access-control-allow-origin"] == app_site.origin
    assert "Origin" in allowed.headers["vary"]

    foreign = httpx.get(client_url, headers={"Origin": FOREIGN_ORIGIN}, timeout=10)
    assert foreign.status_code == 200  # same-origin and non-browser clients still get it
    assert "access-control-allow-origin" not in foreign.headers
    assert "Origin" in foreign.headers["vary"]  # a cache must not hand one's answer to another
