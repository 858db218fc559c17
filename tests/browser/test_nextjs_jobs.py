"""examples/nextjs on the jobs of issues 22 and 23, in Chromium, against the real stack (the
build test_nextjs.py uses): an import's one progress bar and one toast, a Cancel that ends a
running import `cancelled` and one that is refused, a job's redirect and modal only in the tab
that started it, and the seed's hook, unchanged, on SSE where WebSockets are refused."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, Request, expect

from realtime import UIManager
from realtime.frames import SSE_PATH
from realtime.payloads import JobProgress
from tests.browser.nextjs_app import NextApp
from tests.browser.nextjs_pages import (
    Shot,
    Visit,
    create_order,
    no_token_in_urls,
    open_tab,
    row,
    sign_in,
)
from tests.stack import COFFEE

# The first test of the session to use `nextjs` waits for npm ci and the build; under
# `make test-all` this module runs on the worker of test_nextjs.py, which shares that build
# (tests/conftest.py, SHARED_WORKER).
pytestmark = pytest.mark.timeout(300)

WORK = 30_000  # ms: a bound on what waits for a worker (never a measure of its speed)
MODAL = '[role="dialog"][data-modal="payment_failed"]'


def import_orders(page: Page, count: int) -> Locator:
    """Import `count` orders from the page; the import's row in the jobs panel."""
    page.fill("#import-count", str(count))
    page.click("#import-orders")
    return page.locator('.job[data-kind="import"]')


def job_id_of(job: Locator) -> str:
    job_id = job.get_attribute("data-job-id")
    assert job_id, "the job's row has no id"
    return job_id


def pay(visit: Visit, order_id: str, method: str) -> None:
    visit.page.click(f'tr[data-order-id="{order_id}"] button[data-pay="{method}"]')


def test_nextjs_an_import_fills_one_progress_bar_to_its_total_and_shows_one_toast(
    context: BrowserContext, nextjs: NextApp, screenshot: Shot
) -> None:
    visit = sign_in(context, nextjs, "dave")
    job = import_orders(visit.page, 30)
    expect(job).to_have_attribute("data-status", "succeeded", timeout=60_000)
    expect(job).to_have_count(1)  # one row for the batch, none for its orders
    expect(job).to_contain_text("30/30")
    expect(job).to_have_attribute("data-done", "30")
    expect(job.locator(".cancel")).to_be_hidden()
    job_id = job_id_of(job)
    expect(visit.toast("30 orders created, 0 failed", "success")).to_contain_text("Orders imported")
    screenshot(visit.page)
    # Published after the import ended: once it is here, a second toast would be too.
    UIManager.for_user("dave").show_toast("Marker", "after the import", "info")
    expect(visit.toast("Marker")).to_be_visible()
    frames = [f for f in visit.frames if f.get("jobId") == job_id]
    assert [f["title"] for f in frames if f["type"] == "ui_toast"] == ["Orders imported"]
    done = [f["data"]["done"] for f in frames if f["type"] == "ui_update" and "done" in f["data"]]
    assert done == sorted(set(done)), done  # one bar, moving forward only
    assert len(done) > 2, done
    assert done[-1] == 30, done


def test_nextjs_cancelling_a_running_import_ends_it_cancelled_with_its_toast(
    context: BrowserContext, nextjs: NextApp, token: Callable[..., str], screenshot: Shot
) -> None:
    visit = sign_in(context, nextjs, "bob")
    job = import_orders(visit.page, 1000)
    expect(job).to_have_attribute("data-done", re.compile(r"^[1-9]"), timeout=60_000)  # running
    job.locator(".cancel").click()
    expect(job).to_have_attribute("data-status", "cancelled", timeout=60_000)
    expect(job.locator(".cancel")).to_be_hidden()
    toast = visit.toast("Import cancelled", "info")
    expect(toast).to_be_visible()
    said = toast.inner_text()  # now: sonner lets a toast go after a few seconds
    screenshot(visit.page)
    job_id = job_id_of(job)
    answer = nextjs.stack.get(f"/jobs/{job_id}", token("bob")).json()
    assert answer["status"] == "cancelled"
    created = answer["result"]["created"]
    assert 0 < created < 1000, answer
    assert f"{created} orders created, {1000 - created} not created" in said, said
    # The orders that never started are still queued, each to be found cancelled by the
    # worker: an order submitted now is made once they have gone, and the next test's orders
    # do not wait behind them.
    after = nextjs.stack.post("/orders", token("bob"), COFFEE).json()["job_id"]
    assert nextjs.stack.wait_job(after, token("bob"), timeout=180)["status"] == "succeeded"


def test_nextjs_a_refused_cancel_shows_an_error_toast_and_a_finished_job_stays_finished(
    context: BrowserContext, nextjs: NextApp
) -> None:
    """A page that hears a job is running (here: an update published for an order that has
    finished) offers Cancel; the API refuses it (409), and the page says so. The page that
    saw the job end keeps it ended."""
    first = sign_in(context, nextjs, "alice")
    create_order(first)
    finished = first.page.locator('.job[data-kind="order"]')
    expect(finished).to_have_attribute("data-status", "succeeded", timeout=WORK)
    job_id = job_id_of(finished)
    second = open_tab(context, nextjs)
    UIManager.for_user("alice").update_ui(
        JobProgress(jobId=job_id, kind="order", status="running", percent=50)
    )
    job = second.page.locator(f'.job[data-job-id="{job_id}"]')
    expect(job).to_have_attribute("data-status", "running")
    job.locator(".cancel").click()
    refusal = second.toast("Cancel refused", "error")
    expect(refusal).to_be_visible()
    expect(refusal).to_contain_text(f"job {job_id} has already succeeded")  # the API's 409
    expect(job.locator(".cancel")).to_be_enabled()  # it may be asked again
    expect(finished).to_have_attribute("data-status", "succeeded")
    expect(finished.locator(".cancel")).to_be_hidden()


def test_nextjs_a_payment_redirects_and_a_decline_opens_the_modal_only_in_the_tab_that_paid(
    context: BrowserContext, nextjs: NextApp, screenshot: Shot
) -> None:
    """Two tabs of one user (one context, so one session cookie; each page its own
    sessionStorage, so its own tab id): a job's toasts reach both, its redirect and its modal
    only the tab whose click submitted it (insightFetch's Insight-Client header)."""
    paying, watching = sign_in(context, nextjs, "carol"), open_tab(context, nextjs)
    tab_ids = [
        visit.page.evaluate("sessionStorage.getItem('insight:tab')") for visit in (paying, watching)
    ]
    assert None not in tab_ids
    assert tab_ids[0] != tab_ids[1]

    order_id = create_order(paying)
    pay(paying, order_id, "pm_card_visa")
    paying.page.wait_for_url("**/orders?status=success")
    expect(watching.toast(f"Order #{order_id} is paid", "success")).to_contain_text(
        "Payment received", timeout=WORK
    )

    declined = create_order(watching)
    pay(watching, declined, "pm_card_chargeDeclined")
    expect(watching.page.locator(MODAL)).to_contain_text(
        f"Order #{declined} was not paid", timeout=WORK
    )
    # The paying tab, now on /orders?status=success, gets the decline's toast but not its modal.
    expect(paying.toast("Payment failed", "error")).to_be_visible()
    expect(row(paying.page, declined)).to_have_attribute("data-status", "created")
    expect(paying.page.locator(MODAL)).to_have_count(0)
    screenshot(watching.page)
    for visit, unwanted in ((watching, "ui_redirect"), (paying, "ui_modal")):
        assert visit.seen(unwanted) == [], visit.seen(unwanted)
    assert "status=success" not in watching.page.url
    for visit in (paying, watching):
        no_token_in_urls(visit, nextjs)


def test_nextjs_the_seeds_hook_falls_back_to_sse_where_websockets_are_refused(
    context: BrowserContext, nextjs: NextApp, screenshot: Shot
) -> None:
    """The app as built (its hook unchanged), on a network that refuses WebSocket upgrades:
    insight.js opens its SSE stream through the same proxy, and toasts, `ui-update` events
    (the job's bar, the orders list) and a redirect all arrive over it."""
    proxy = nextjs.proxy
    streams: list[str] = []

    def sse(request: Request) -> None:
        if SSE_PATH in request.url:
            streams.append(request.url)

    refused_before = proxy.refused
    context.on("request", sse)
    proxy.refusing = True
    try:
        visit = sign_in(context, nextjs, "dave")
        assert proxy.refused > refused_before  # it tried the WebSocket, and was refused
        assert streams, "no SSE stream was opened"
        assert all(url.startswith(proxy.origin + SSE_PATH + "?") for url in streams), streams
        order_id = create_order(visit)
        job = visit.page.locator('.job[data-kind="order"]')
        expect(job).to_have_attribute("data-status", "succeeded", timeout=WORK)
        expect(job).to_contain_text("100%")
        expect(row(visit.page, order_id)).to_have_attribute("data-status", "created")
        screenshot(visit.page)
        opened = len(streams)
        pay(visit, order_id, "pm_card_visa")
        visit.page.wait_for_url("**/orders?status=success")
        expect(visit.page.locator('[data-banner="paid"]')).to_be_visible()
        expect(visit.page.locator('[data-connection="open"]')).to_be_visible()
        assert len(streams) > opened  # the new page is on SSE again
        assert visit.frames == []  # nothing came over a WebSocket
    finally:
        proxy.refusing = False
