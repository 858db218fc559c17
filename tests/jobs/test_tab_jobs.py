"""A job drives the tab that started it: two tabs of one user, on two edges, and a payment
submitted from one of them with `Insight-Client`. Its redirect (or, on a decline, its modal)
reaches that tab only, while its toasts reach both; with that tab gone, every tab gets it,
and the tab that comes back (a reload) finds it in its replay."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from realtime import UIManager
from tests.harness import Client, Edge, eventually, id_of, unique
from tests.jobs.test_jobs_e2e import create_order, frames_for_job, is_toast
from tests.stack import Stack

pytestmark = pytest.mark.anyio


def is_redirect(frame: dict[str, Any]) -> bool:
    return bool(frame["type"] == "ui_redirect")


def is_modal(frame: dict[str, Any]) -> bool:
    return bool(frame["type"] == "ui_modal")


async def tab(edge: Edge, token: str, client: str, since: str | None = None) -> Client:
    return await Client.connect(edge.ws_url, token, since=since, query={"client": client})


def pay(stack: Stack, token: str, order_id: str, method: str, client: str) -> str:
    """Pay for the order from the tab `client` (its Insight-Client header); the job's id."""
    body = {"order_id": order_id, "payment_method": method, "success_url": "/thanks"}
    answer = stack.post("/payments", token, body, **{"Insight-Client": client})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["job_id"])


async def no_redirect_or_modal_for(user: str, *tabs: Client) -> None:
    """The tabs were sent no redirect and no modal beyond those read already: a marker
    published now arrives after anything published earlier (toasts and updates, such as the
    webhook's payment_update, may still come first)."""
    marker = UIManager.for_user(user).refresh()
    for client in tabs:
        frame = await client.until(lambda f: f["type"] in ("ui_redirect", "ui_modal", "ui_refresh"))
        assert id_of(frame) == marker, frame


async def test_a_payment_redirects_and_a_decline_opens_the_modal_in_the_tab_that_paid_only(
    stack: Stack, edge_factory: Callable[..., Edge], token: Callable[..., str]
) -> None:
    user = unique("u")
    paying = await tab(stack.edge, token(user), "tab-paying")
    other = await tab(edge_factory(), token(user), "tab-other")

    order_id = await create_order(stack, paying, token(user))
    job_id = pay(stack, token(user), order_id, "pm_card_visa", "tab-paying")
    seen = await frames_for_job(paying, job_id, is_redirect)
    assert [f["target"] for f in seen if is_redirect(f)] == ["/thanks"]
    assert any(is_toast(f) for f in seen)
    await frames_for_job(other, job_id, is_toast)  # the toast reaches every tab
    await no_redirect_or_modal_for(user, paying, other)  # the redirect does not

    # A decline, paid from the other tab: the modal opens there only.
    declined_order = await create_order(stack, other, token(user))
    job_id = pay(stack, token(user), declined_order, "pm_card_chargeDeclined", "tab-other")
    seen = await frames_for_job(other, job_id, is_modal)
    assert [f["data"]["type"] for f in seen if is_modal(f)] == ["payment_failed"]
    await frames_for_job(paying, job_id, is_toast)
    await no_redirect_or_modal_for(user, paying, other)
    for client in (paying, other):
        await client.close()


async def test_with_the_paying_tab_gone_every_tab_is_redirected_and_a_reload_replays_it(
    stack: Stack, edge_factory: Callable[..., Edge], token: Callable[..., str]
) -> None:
    user = unique("u")
    paying = await tab(stack.edge, token(user), "tab-paying")
    other = await tab(edge_factory(), token(user), "tab-other")
    order_id = await create_order(stack, paying, token(user))
    await paying.close()
    await eventually(lambda: UIManager.for_user(user).connections() == 1)

    job_id = pay(stack, token(user), order_id, "pm_card_visa", "tab-paying")
    seen = await frames_for_job(other, job_id, is_redirect)
    assert [f["target"] for f in seen if is_redirect(f)] == ["/thanks"]

    # The paying tab reloads, with its id and its cursor: the redirect is in its replay.
    back = await tab(stack.edge, token(user), "tab-paying", since=paying.cursor)
    assert [f["target"] for f in back.frames if is_redirect(f)] == ["/thanks"]
    for client in (other, back):
        await client.close()


async def test_a_malformed_insight_client_header_is_a_422_naming_it(
    stack: Stack, token: Callable[..., str]
) -> None:
    user = unique("u")
    order_id = stack.order(token(user))
    body = {"order_id": order_id, "payment_method": "pm_card_visa"}
    refused = stack.post("/payments", token(user), body, **{"Insight-Client": "not a tab id!"})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["header", "Insight-Client"]
