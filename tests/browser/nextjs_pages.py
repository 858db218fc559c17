"""What the tests of examples/nextjs do with its pages, in Chromium: sign in, open another tab
of the signed-in user, create an order, and what a page's WebSockets carried."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import BrowserContext, Locator, Page, WebSocket, expect

from tests.browser.nextjs_app import NextApp

Shot = Callable[..., Path]
CONNECTED = "✅ UI Events WebSocket connected"  # the seed's console line
ORDER_TOAST = re.compile(r"Order #(\d+) created")
# The id of an "Order #N created" toast on the page whose N is not in `known`, else null.
NEW_ORDER_TOAST = """known => {
  for (const toast of document.querySelectorAll("[data-sonner-toast]")) {
    const match = /Order #(\\d+) created/.exec(toast.textContent);
    if (match && !known.includes(match[1])) return match[1];
  }
  return null;
}"""


@dataclass
class Visit:
    """One signed-in page, with what its WebSockets did."""

    page: Page
    sockets: list[str] = field(default_factory=list)
    frames: list[dict[str, Any]] = field(default_factory=list)

    def record(self, socket: WebSocket) -> None:
        self.sockets.append(socket.url)
        socket.on("framereceived", self._frame)

    def _frame(self, payload: str | bytes) -> None:
        self.frames.append(json.loads(payload))

    def toast(self, text: str | re.Pattern[str], kind: str | None = None) -> Locator:
        selector = "[data-sonner-toast]" + (f'[data-type="{kind}"]' if kind else "")
        return self.page.locator(selector, has_text=text)

    def seen(self, kind: str) -> list[dict[str, Any]]:
        """The frames of that type this page's sockets received."""
        return [frame for frame in self.frames if frame["type"] == kind]


def watched(page: Page) -> Visit:
    visit = Visit(page)
    page.on("websocket", visit.record)
    return visit


def sign_in(context: BrowserContext, app: NextApp, user: str) -> Visit:
    """Choose `user` on the sign-in page; returns once the seed's console line was logged."""
    visit = watched(context.new_page())
    with visit.page.expect_console_message(lambda m: m.text == CONNECTED, timeout=20_000):
        visit.page.goto(app.url)
        visit.page.click(f'button[data-user="{user}"]')
    visit.page.wait_for_url("**/orders")
    expect(visit.page.locator('[data-connection="open"]')).to_be_visible()
    return visit


def open_tab(context: BrowserContext, app: NextApp) -> Visit:
    """Another tab of the user signed in in `context` (its own sessionStorage: its own tab
    id), on the orders page, once connected."""
    visit = watched(context.new_page())
    with visit.page.expect_console_message(lambda m: m.text == CONNECTED, timeout=20_000):
        visit.page.goto(f"{app.url}/orders")
    expect(visit.page.locator('[data-connection="open"]')).to_be_visible()
    return visit


def no_token_in_urls(visit: Visit, app: NextApp) -> None:
    assert visit.sockets, "the page opened no WebSocket"
    for url in visit.sockets:
        assert url.startswith(app.ws_url + "?"), url
        assert "token=" not in url, url


def row(page: Page, order_id: str) -> Locator:
    return page.locator(f'tr[data-order-id="{order_id}"]')


def create_order(visit: Visit) -> str:
    """Create an order from the page; its id, read from the order's sonner toast (a toast of
    an order this page had shown before is not it: another tab's, say)."""
    known = [
        match.group(1)
        for text in visit.page.locator("[data-sonner-toast]").all_inner_texts()
        if (match := ORDER_TOAST.search(text))
    ]
    visit.page.click("#create-order")
    found = visit.page.wait_for_function(NEW_ORDER_TOAST, arg=known).json_value()
    assert isinstance(found, str), found
    toast = visit.toast(f"Order #{found} created", "success")
    expect(toast).to_be_visible()
    expect(toast).to_contain_text("Order created")
    return found
