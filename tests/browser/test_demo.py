"""The demo and its client, in a real browser, against the real system."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from realtime import UIManager
from tests.stack import Stack

Shot = Callable[..., Path]


def open_demo(context: BrowserContext, stack: Stack, user: str, query: str = "") -> Page:
    page = context.new_page()
    page.goto(f"{stack.edge.http_url}/?user={user}{query}")
    page.wait_for_function("window.insightDemo && window.insightDemo.status === 'open'")
    return page


def create_order(page: Page) -> None:
    """Create an order and wait for its own "Order created" toast: an earlier order's (the
    same user's, in another tab too) may still be on screen."""
    shown = page.locator(".toast.success").evaluate_all(
        "toasts => toasts.map(t => t.dataset.jobId)"
    )
    page.click("#create-order")
    page.wait_for_function(
        """shown => [...document.querySelectorAll('.toast.success')].some(
            t => t.textContent.includes('Order created') && !shown.includes(t.dataset.jobId))""",
        arg=shown,
    )


def import_orders(page: Page, count: int) -> Locator:
    """Import `count` orders from the page; the import's row in the jobs list."""
    page.fill("#import-count", str(count))
    page.click("#import-orders")
    return page.locator('.job[data-kind="import"]')


def job_frames(page: Page, job_id: str) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = page.evaluate(
        "id => window.insightDemo.frames.filter(f => f.jobId === id)", job_id
    )
    return frames


def test_creating_an_order_shows_its_progress_and_toast(
    context: BrowserContext, demo: Stack, screenshot: Shot
) -> None:
    page = open_demo(context, demo, "alice")
    create_order(page)
    expect(page.locator('.job[data-status="succeeded"]')).to_have_count(1)
    screenshot(page)


def test_paying_lands_on_the_orders_page(
    context: BrowserContext, demo: Stack, screenshot: Shot
) -> None:
    page = open_demo(context, demo, "alice")
    create_order(page)
    page.click("#pay-visa")
    page.wait_for_url("**/orders?status=success*")
    expect(page.locator("#paid-banner")).to_be_visible()
    expect(page.locator("tr[data-order-id] td", has_text="paid").first).to_be_visible()
    screenshot(page)


def test_a_declined_card_opens_the_payment_failed_modal(
    context: BrowserContext, demo: Stack, screenshot: Shot
) -> None:
    page = open_demo(context, demo, "bob")
    create_order(page)
    page.click("#pay-declined")
    expect(page.locator("#modal")).to_be_visible()
    expect(page.locator("#modal-body")).to_contain_text("Your card was declined.")
    expect(page.locator(".toast.error", has_text="Payment failed")).to_be_visible()
    screenshot(page)


def test_two_users_of_one_business_share_metrics_but_not_toasts(
    browser: Browser, context: BrowserContext, demo: Stack, screenshot: Shot
) -> None:
    alice = open_demo(context, demo, "alice")
    bob = open_demo(browser.new_context(viewport={"width": 1280, "height": 860}), demo, "bob")
    create_order(alice)
    alice.click("#recalculate")
    for page in (alice, bob):
        expect(page.locator('.figure[data-window="today"] [data-k="orders"]')).not_to_have_text("")
    bob.wait_for_timeout(500)  # a toast for Alice would have reached Bob by now
    expect(bob.locator(".toast", has_text="Order created")).to_have_count(0)
    screenshot(alice, "-alice")
    screenshot(bob, "-bob")
    bob.context.close()


def test_a_celebration_the_demos_own_event_reaches_every_member_of_the_business(
    context: BrowserContext, demo: Stack, screenshot: Shot
) -> None:
    alice, bob = open_demo(context, demo, "alice"), open_demo(context, demo, "bob")
    carol = open_demo(context, demo, "carol")  # another business
    alice.click("#celebrate")
    for page in (alice, bob):
        expect(page.locator("#celebration")).to_have_text(
            "🎉 Alice: Celebrating with the whole team!"
        )
    expect(carol.locator("#celebration")).to_be_hidden()  # another business: not for her
    screenshot(bob)
    carol.click("#celebrate")
    expect(carol.locator("#celebration")).to_have_text("🎉 Carol: Celebrating with the whole team!")
    bob.click("#celebrate")  # and any member's reaches the others
    expect(alice.locator("#celebration")).to_have_attribute("data-by", "Bob")
    expect(bob.locator("#celebration")).to_have_attribute("data-by", "Bob")


def test_events_published_while_the_edge_restarts_arrive_after_it_returns(
    context: BrowserContext, demo: Stack, screenshot: Shot
) -> None:
    page = open_demo(context, demo, "carol")
    demo.edge.terminate()  # SIGTERM: the page is told 1012 and keeps trying
    page.wait_for_function("window.insightDemo.status !== 'open'")
    UIManager.for_user("carol").show_toast(
        "While you were away", "Published during the restart", "info"
    )
    demo.edge.start()
    page.wait_for_function("window.insightDemo.status === 'open'", timeout=30_000)
    expect(page.locator(".toast", has_text="While you were away")).to_be_visible()
    screenshot(page)


def test_an_expiring_token_is_renewed_and_the_session_goes_on(
    context: BrowserContext, demo: Stack, screenshot: Shot
) -> None:
    page = open_demo(context, demo, "dave", "&ttl=3")
    # The edge closes with 4401 when the token expires; the client fetches a new one.
    page.wait_for_function("window.insightDemo.tokenFetches >= 2", timeout=20_000)
    page.wait_for_function("window.insightDemo.status === 'open'")
    UIManager.for_user("dave").show_toast("Still here", "After a token renewal", "success")
    expect(page.locator(".toast", has_text="Still here")).to_be_visible()
    screenshot(page)


def test_a_reload_resumes_from_the_stored_cursor_without_repeats(
    context: BrowserContext, demo: Stack, screenshot: Shot
) -> None:
    page = open_demo(context, demo, "alice")
    UIManager.for_user("alice").show_toast("Before the reload", "seen live", "info")
    expect(page.locator(".toast", has_text="Before the reload")).to_be_visible()
    page.goto("about:blank")  # the tab leaves; its sessionStorage keeps the cursor
    UIManager.for_user("alice").show_toast("While away", "published with no page open", "info")
    page.go_back()
    page.wait_for_function("window.insightDemo && window.insightDemo.status === 'open'")
    expect(page.locator(".toast", has_text="While away")).to_be_visible()
    expect(page.locator(".toast", has_text="Before the reload")).to_have_count(0)  # not twice
    screenshot(page)


def test_a_payment_redirects_and_a_decline_opens_the_modal_only_in_the_tab_that_paid(
    context: BrowserContext, demo: Stack, screenshot: Shot
) -> None:
    """Two tabs of one user (each its own sessionStorage, so its own tab id): a job's toasts
    reach both, its redirect and its modal only the tab whose click submitted it."""
    paying, watching = open_demo(context, demo, "carol"), open_demo(context, demo, "carol")
    tab_ids = [
        page.evaluate("sessionStorage.getItem('insight:tab')") for page in (paying, watching)
    ]
    assert None not in tab_ids
    assert tab_ids[0] != tab_ids[1]

    create_order(paying)
    paying.click("#pay-visa")
    paying.wait_for_url("**/orders?status=success*")
    expect(watching.locator(".toast.success", has_text="Payment received")).to_be_visible()

    create_order(watching)
    watching.click("#pay-declined")
    expect(watching.locator("#modal")).to_be_visible()
    # The paying tab, now on the orders page, gets the decline's toast but not its modal.
    expect(paying.locator(".toast.error", has_text="Payment failed")).to_be_visible()
    screenshot(watching)
    for page, unwanted in ((watching, "ui_redirect"), (paying, "ui_modal")):
        seen = page.evaluate(f"window.insightDemo.frames.filter(f => f.type === '{unwanted}')")
        assert seen == [], seen
    assert "status=success" not in watching.url


def test_an_import_fills_one_progress_bar_to_its_total_and_shows_one_toast(
    context: BrowserContext, demo: Stack, screenshot: Shot
) -> None:
    page = open_demo(context, demo, "dave")
    job = import_orders(page, 30)
    expect(job).to_have_attribute("data-status", "succeeded", timeout=30_000)
    expect(job).to_contain_text("30/30")
    job_id = job.get_attribute("data-job-id")
    assert job_id
    toast = page.locator(f'.toast.success[data-job-id="{job_id}"]')
    expect(toast).to_contain_text("30 orders created, 0 failed")
    screenshot(page)
    # Published after the import ended: once it is here, a second toast would be too.
    UIManager.for_user("dave").show_toast("Marker", "after the import", "info")
    expect(page.locator(".toast", has_text="Marker")).to_be_visible()
    frames = job_frames(page, job_id)
    assert [f["title"] for f in frames if f["type"] == "ui_toast"] == ["Orders imported"]
    done = [f["data"]["done"] for f in frames if f["type"] == "ui_update" and "done" in f["data"]]
    assert done == sorted(set(done)), done  # one bar, moving forward only
    assert len(done) > 2, done
    assert done[-1] == 30, done


def test_cancelling_a_running_import_ends_it_cancelled_with_its_toast(
    context: BrowserContext, demo: Stack, token: Callable[..., str], screenshot: Shot
) -> None:
    page = open_demo(context, demo, "bob")
    job = import_orders(page, 1000)
    expect(job).to_have_attribute("data-done", re.compile(r"^[1-9]"), timeout=30_000)  # running
    job.locator(".cancel").click()
    expect(job).to_have_attribute("data-status", "cancelled", timeout=60_000)
    expect(job.locator(".cancel")).to_be_hidden()
    job_id = job.get_attribute("data-job-id")
    toast = page.locator(f'.toast.info[data-job-id="{job_id}"]')
    expect(toast).to_contain_text("Import cancelled")
    screenshot(page)
    answer = demo.get(f"/jobs/{job_id}", token("bob")).json()
    assert answer["status"] == "cancelled"
    assert 0 < answer["result"]["created"] < 1000, answer
    assert toast.inner_text().endswith(
        f"{answer['result']['created']} orders created, "
        f"{1000 - answer['result']['created']} not created"
    )
