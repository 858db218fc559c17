"""The HTTP publish API with the application's own events: the job API and an edge both read the
test application's INSIGHT_EVENT_MODULES (real processes, the session's private Redis). A
declared event is published and delivered like the five; an undeclared type or a bad field is
a 422 naming it, and a batch with one is refused whole; the OpenAPI schema lists the events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.local_redis import LocalRedis
from tests.app_events import DECLARED
from tests.harness import Client, Edge, ServerProcess, id_of, unique, without_id
from tests.jobs.test_publish_api import assert_json_refusal, locs, post, start_api
from tests.stack import fresh_database

pytestmark = pytest.mark.anyio

CART = {"type": "cart_updated", "cartId": "c1", "items": 2}


@pytest.fixture(scope="module")
def app_api(redis_server: LocalRedis, artifacts: Path) -> Iterator[ServerProcess]:
    with fresh_database("sqlite", artifacts) as url:
        process = start_api(redis_server.url, artifacts, url, INSIGHT_EVENT_MODULES=DECLARED)
        yield process
        process.stop()


@pytest.fixture
async def http(app_api: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{app_api.http_url}/api/v1", timeout=10) as client:
        yield client


@pytest.fixture
def app_edge(edge_factory: Callable[..., Edge]) -> Edge:
    return edge_factory(INSIGHT_EVENT_MODULES=DECLARED)


async def test_a_declared_event_and_payload_are_published_and_delivered(
    http: httpx.AsyncClient, app_edge: Edge, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(app_edge.ws_url, token(user))
    inventory = {"type": "ui_update", "data": {"type": "inventory_changed", "sku": "A", "left": 4}}
    items: list[dict[str, Any]] = [
        {"to": {"user": user}, "event": CART},
        {"to": {"user": user}, "event": {"type": "ui_confetti"}, "ttl_seconds": 5},
        {"to": {"user": user}, "event": inventory, "coalesce_key": "inventory:A"},
    ]
    response = await post(http, "/publish/batch", {"items": items})
    assert response.status_code == 200, response.text
    single = await post(http, "/publish", {"to": {"user": user}, "event": CART})
    assert single.status_code == 200, single.text
    ids = [*response.json()["ids"], single.json()["id"]]
    frames = [await client.until(lambda f: not f["type"].startswith("insight_")) for _ in ids]
    assert [id_of(f) for f in frames] == ids
    assert [without_id(f) for f in frames] == [
        CART, {"type": "ui_confetti", "colors": []}, inventory, CART
    ]  # fmt: skip
    await client.close()


@pytest.mark.parametrize(
    ("event", "loc"),
    [
        ({"type": "cart_updated", "cartId": "c1", "items": -1},
         ["body", "event", "cart_updated", "items"]),
        ({"type": "cart_updated", "cartId": "c1", "items": 1, "note": "x"},
         ["body", "event", "cart_updated", "note"]),
        ({"type": "ui_update", "data": {"type": "inventory_changed", "sku": "A"}},
         ["body", "event", "ui_update", "data", "left"]),
        ({"type": "ui_update", "data": {"type": "job_progress", "percent": 3}},
         ["body", "event", "ui_update", "data", "jobId"]),
    ],
)  # fmt: skip
async def test_a_bad_field_is_a_422_naming_it(
    http: httpx.AsyncClient, event: dict[str, Any], loc: list[str]
) -> None:
    response = await post(http, "/publish", {"to": {"user": "42"}, "event": event})
    assert_json_refusal(response, 422)
    assert loc in locs(response)


async def test_an_undeclared_type_is_a_422_naming_it_and_a_batch_with_one_publishes_nothing(
    http: httpx.AsyncClient, app_edge: Edge, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(app_edge.ws_url, token(user))
    for name in ("cart_emptied", "insight_ready", "ui_explode"):
        response = await post(http, "/publish", {"to": {"user": user}, "event": {"type": name}})
        assert_json_refusal(response, 422, name)
        assert ["body", "event"] in locs(response)
    items = [{"to": {"user": user}, "event": CART}, {"to": {"user": user}, "event": {"type": "x"}}]
    response = await post(http, "/publish/batch", {"items": items})
    assert_json_refusal(response, 422)
    assert ["body", "items", 1, "event"] in locs(response)
    marker = await post(http, "/publish", {"to": {"user": user}, "event": {"type": "ui_refresh"}})
    frame = await client.until(lambda f: not f["type"].startswith("insight_"))
    assert id_of(frame) == marker.json()["id"]  # nothing of the refused batch came first
    await asyncio.wait_for(client.close(), 5)


def test_the_openapi_schema_lists_the_declared_events(app_api: ServerProcess) -> None:
    document = httpx.get(f"{app_api.http_url}/openapi.json", timeout=10).json()
    schemas = document["components"]["schemas"]
    assert {"CartUpdated", "Confetti", "Toast", "Update"} <= set(schemas)
    assert schemas["CartUpdated"]["properties"]["type"]["const"] == "cart_updated"
