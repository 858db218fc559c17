"""The seed's own kind of frontend, for real: examples/nextjs (App Router, TypeScript strict,
the product's useUIEvents hook unchanged, sonner's Toaster) as a production build under
`next start`, in Debian's Chromium, against the real job API, workers and edge.

The app is copied to a temporary folder, installed with `npm ci` from its lock file and built
there (`next build` inlines the stack's NEXT_PUBLIC_INSIGHT_WS and NEXT_PUBLIC_INSIGHT_API);
the services allow only its origin (ALLOWED_ORIGINS). Its token route signs with the stack's
JWT secret, audience and issuer. The build, the stack and the pages' helpers are shared with
test_nextjs_jobs.py (the `nextjs` fixture, nextjs_app.py, nextjs_pages.py).
"""

from __future__ import annotations

import json
import re

import httpx
import jwt
import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from core.config import Settings
from core.security import verify_token
from demo.routes import DEMO_USERS
from realtime import UIManager
from tests.browser.nextjs_app import APP, NextApp
from tests.browser.nextjs_pages import Shot, create_order, no_token_in_urls, row, sign_in
from tests.harness import ROOT

# npm ci, the build and the stack come first: the first test's budget covers them. Under
# `make test-all` this module runs on the worker of test_nextjs_jobs.py, which shares the
# build (tests/conftest.py, SHARED_WORKER).
pytestmark = pytest.mark.timeout(300)


def test_the_example_uses_the_products_client_and_hook_unchanged() -> None:
    """The copies in src/hooks/ (what `npm run sync-insight` writes) are edge/static's; its
    insight.d.ts is generated with the example's own event (tests/test_events.py)."""
    for name in ("insight.js", "insight-wire.js", "insight-page.js", "useUIEvents.ts"):
        copy = (APP / "src" / "hooks" / name).read_bytes()
        assert copy == (ROOT / "edge" / "static" / name).read_bytes(), (
            f"examples/nextjs/src/hooks/{name} differs: run `npm run sync-insight` there"
        )
    users = json.loads((APP / "src" / "lib" / "demo-users.json").read_text())
    assert {u["id"]: (u["name"], u["business_id"]) for u in users} == DEMO_USERS


def test_the_token_route_signs_what_the_services_accept(
    nextjs: NextApp, settings: Settings
) -> None:
    refused = httpx.post(f"{nextjs.url}/api/insight-token", timeout=10)
    assert refused.status_code == 401
    answer = httpx.post(
        f"{nextjs.url}/api/insight-token", cookies={"insight_demo_user": "carol"}, timeout=10
    )
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    token = answer.json()["token"]
    identity = verify_token(token, settings)
    assert (identity.user_id, identity.business_id, identity.name) == ("carol", "globex", "Carol")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert set(claims) == {"sub", "business_id", "name", "iat", "exp", "aud", "iss"}
    assert claims["exp"] - claims["iat"] == 900


def test_nextjs_signing_in_connects_with_the_token_out_of_the_url(
    context: BrowserContext, nextjs: NextApp, screenshot: Shot
) -> None:
    visit = sign_in(context, nextjs, "alice")
    expect(visit.page.locator(".who")).to_have_text("Alice · acme")
    assert any(f["type"] == "insight_ready" for f in visit.frames)
    no_token_in_urls(visit, nextjs)
    screenshot(visit.page)


def test_nextjs_an_order_shows_its_progress_a_sonner_toast_and_a_new_row(
    context: BrowserContext, nextjs: NextApp, screenshot: Shot
) -> None:
    visit = sign_in(context, nextjs, "alice")
    page = visit.page
    rows_before = page.locator("tr[data-order-id]").count()
    order_id = create_order(visit)
    screenshot(page)  # the toast, while it shows
    # The workers' ui_update events, through useUIEventListener, change what the page shows:
    # the job's progress bar reaches 100% and the orders list gains the new row.
    job = page.locator('.job[data-kind="order"]')
    expect(job).to_have_attribute("data-status", "succeeded")
    expect(job).to_contain_text("100%")
    expect(row(page, order_id)).to_have_attribute("data-status", "created")
    assert page.locator("tr[data-order-id]").count() == rows_before + 1
    assert any(
        f["type"] == "ui_update" and f["data"].get("type") == "job_progress" for f in visit.frames
    )
    no_token_in_urls(visit, nextjs)


def test_nextjs_a_successful_payment_lands_on_orders_status_success(
    context: BrowserContext, nextjs: NextApp, screenshot: Shot
) -> None:
    visit = sign_in(context, nextjs, "bob")
    page = visit.page
    order_id = create_order(visit)
    page.click(f'tr[data-order-id="{order_id}"] button[data-pay="pm_card_visa"]')
    page.wait_for_url("**/orders?status=success")
    expect(page.locator('[data-banner="paid"]')).to_have_text("Payment succeeded — thank you!")
    expect(row(page, order_id)).to_have_attribute("data-status", "paid")
    expect(page.locator('[data-connection="open"]')).to_be_visible()  # a full load: reconnected
    screenshot(page)
    no_token_in_urls(visit, nextjs)


def test_nextjs_a_declined_card_shows_an_error_toast_and_the_payment_failed_modal(
    context: BrowserContext, nextjs: NextApp, screenshot: Shot
) -> None:
    visit = sign_in(context, nextjs, "dave")
    page = visit.page
    order_id = create_order(visit)
    page.click(f'tr[data-order-id="{order_id}"] button[data-pay="pm_card_chargeDeclined"]')
    modal = page.locator('[role="dialog"][data-modal="payment_failed"]')
    expect(modal).to_be_visible()
    expect(modal).to_contain_text(f"Order #{order_id} was not paid")
    expect(modal).to_contain_text("declined")
    expect(visit.toast("Payment failed", "error")).to_be_visible()
    screenshot(page)
    page.click('[data-modal="payment_failed"] button')
    expect(modal).to_have_count(0)
    expect(row(page, order_id)).to_have_attribute("data-status", "created")
    no_token_in_urls(visit, nextjs)


def test_nextjs_live_metrics_and_another_business_sees_none_of_it(
    browser: Browser, context: BrowserContext, nextjs: NextApp, screenshot: Shot
) -> None:
    alice = sign_in(context, nextjs, "alice")
    other = browser.new_context(viewport={"width": 1280, "height": 860})
    other.set_default_timeout(15_000)
    try:
        carol = sign_in(other, nextjs, "carol")
        carol.page.click('nav a[href="/dashboard"]')
        # Carol's dashboard asks for Globex's figures once live, and they arrive.
        expect(carol.page.locator('[data-business="globex"] .figure')).to_have_count(3)

        order_id = create_order(alice)
        alice.page.click('nav a[href="/dashboard"]')  # a client-side navigation: same socket
        dashboard = alice.page.locator('[data-business="acme"]')
        expect(dashboard.locator('[data-window="today"] [data-k="orders"]')).to_have_text(
            re.compile(r"^[1-9][0-9]*$")
        )
        assert len(alice.sockets) == 1

        # A control event for Globex, published after everything Alice caused: once Carol has
        # it, she would have had Alice's too, if any had been addressed to her.
        UIManager.for_business("globex").show_toast("For Globex", "members only", "info")
        expect(carol.toast("For Globex")).to_be_visible()
        expect(carol.page.locator("[data-sonner-toast]", has_text="Order")).to_have_count(0)
        expect(alice.toast("For Globex")).to_have_count(0)
        seen_by_carol = json.dumps(carol.frames)
        assert f"Order #{order_id}" not in seen_by_carol
        assert '"businessId": "acme"' not in seen_by_carol
        assert any(f.get("data", {}).get("businessId") == "globex" for f in carol.frames)
        screenshot(alice.page, "-alice")
        screenshot(carol.page, "-carol")
        for visit in (alice, carol):
            no_token_in_urls(visit, nextjs)
    finally:
        other.close()


def test_nextjs_the_apps_own_event_reaches_its_business_through_the_typed_hook(
    browser: Browser, context: BrowserContext, nextjs: NextApp, screenshot: Shot
) -> None:
    """`ui_confetti` (demo/events.py), published by the app's server through the HTTP API,
    reaches the listener `useUIEventListener("ui-confetti", ...)` of every member of the
    business, and nobody else's."""
    alice = sign_in(context, nextjs, "alice")
    others = [browser.new_context(viewport={"width": 1280, "height": 860}) for _ in range(2)]
    try:
        for other in others:  # one session cookie per context: a context per person
            other.set_default_timeout(15_000)
        bob, carol = sign_in(others[0], nextjs, "bob"), sign_in(others[1], nextjs, "carol")
        alice.page.click("#celebrate")
        for visit in (alice, bob):
            expect(visit.page.locator(".celebration")).to_have_text(
                "🎉 Alice: Celebrating with the whole team!"
            )
        frame = next(f for f in bob.frames if f["type"] == "ui_confetti")
        assert {k: v for k, v in frame.items() if k != "id"} == {
            "type": "ui_confetti", "by": "Alice", "message": "Celebrating with the whole team!"
        }  # fmt: skip
        carol.page.click("#celebrate")  # after Alice's: had hers reached Carol, it came first
        expect(carol.page.locator(".celebration")).to_have_attribute("data-by", "Carol")
        assert [f["by"] for f in carol.frames if f["type"] == "ui_confetti"] == ["Carol"]
        screenshot(bob.page)
    finally:
        for other in others:
            other.close()
