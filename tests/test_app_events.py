"""The application's own events (realtime/registry.py): declared in the modules that
INSIGHT_EVENT_MODULES names, validated by producers exactly like the five, and refused at load
when they cannot be used. No process starts here; delivery is tests/test_app_events_flow.py."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from realtime import UIManager
from realtime.events import Toast, Update
from realtime.payloads import JobProgress
from realtime.recipients import Recipient
from realtime.registry import EventDeclarationError, UndeclaredEvent, load_registry
from tests.app_events import DECLARED, EVOLVED, declared, declaring, evolved


@pytest.fixture
def app_events() -> Iterator[None]:
    """This process declares the test application's events, as INSIGHT_EVENT_MODULES says."""
    with declaring(f" {DECLARED} ", ""):
        yield


def test_a_declared_module_adds_its_events_and_payloads_beside_insights_own() -> None:
    registry = load_registry([DECLARED])
    assert list(registry.events) == [
        "ui_redirect", "ui_toast", "ui_refresh", "ui_update", "ui_modal",
        "cart_updated", "ui_confetti", "cart_abandoned", "cart_snapshot",
    ]  # fmt: skip
    assert set(registry.payloads) == {
        "job_progress", "metrics_update", "payment_update", "order_update", "inventory_changed"
    }  # fmt: skip
    event = registry.parse({"type": "cart_updated", "cartId": "c1", "items": 3})
    assert event == declared.CartUpdated(cartId="c1", items=3)
    assert declared.Confetti.default_ttl_seconds == 60
    # A base of the module's own declares no type; its subclass has the base's fields.
    assert registry.parse({"type": "cart_abandoned"}) == declared.CartAbandoned(actor="system")


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"type": "cart_updated", "cartId": "c1", "items": -1}, "cart_updated.items"),
        ({"type": "cart_updated", "cartId": "c1"}, "cart_updated.items"),
        ({"type": "cart_updated", "cartId": "c1", "items": 1, "extra": 1}, "cart_updated.extra"),
        ({"type": "ui_update", "data": {"type": "inventory_changed", "sku": "A", "left": "x"}},
         "ui_update.data.left"),
        ({"type": "ui_update", "data": {"type": "job_progress", "jobId": "j", "kind": "order",
                                        "status": "running", "percent": 101}},
         "ui_update.data.percent"),
    ],
)  # fmt: skip
def test_a_bad_field_of_a_declared_event_is_refused_by_name(bad: object, field: str) -> None:
    with pytest.raises(ValidationError) as error:
        load_registry([DECLARED]).parse(bad)
    assert field in {".".join(map(str, e["loc"])) for e in error.value.errors()}


def test_an_undeclared_type_is_refused_naming_the_type() -> None:
    with pytest.raises(ValidationError) as error:
        load_registry(()).parse({"type": "cart_updated", "cartId": "c1", "items": 3})
    assert "cart_updated" in str(error.value)


def test_an_untyped_update_is_still_any_json() -> None:
    data = {"type": "something_else", "anything": [1, {"x": None}]}
    assert load_registry(()).parse({"type": "ui_update", "data": data}) == Update(data=data)


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("tests.app_events.shadowing", ["tests.app_events.shadowing", "MyToast", "'ui_toast'"]),
        ("tests.app_events.reserved", ["tests.app_events.reserved", "Ping", "'insight_ping'"]),
        ("tests.app_events.shadowing_payload",
         ["MyProgress", "'job_progress'", "realtime.payloads.JobProgress"]),
        ("tests.app_events.badly_named", ["CartUpdated", "'Cart-Updated'"]),
        ("tests.app_events.two_names", ["Either", "one name"]),
        ("tests.app_events.broken", ["'tests.app_events.broken'", "does not import",
                                     "insight_no_such_module"]),
        ("tests.app_events.no_such_module", ["'tests.app_events.no_such_module'"]),
        ("tests.app_events.reexports", ["'tests.app_events.reexports'", "defines no AppEvent"]),
        ("os", ["'os'", "defines no AppEvent"]),
    ],
)  # fmt: skip
def test_a_module_that_cannot_be_used_is_refused_at_load_naming_it(
    module: str, names: list[str]
) -> None:
    with pytest.raises(EventDeclarationError) as error:
        load_registry([DECLARED, module])
    for name in names:
        assert name in str(error.value)


def test_two_modules_declaring_one_type_are_refused_naming_both() -> None:
    with pytest.raises(EventDeclarationError) as error:
        load_registry([DECLARED, EVOLVED])
    message = str(error.value)
    assert "tests.app_events.evolved: CartUpdated" in message
    assert "tests.app_events.declared.CartUpdated" in message


def test_the_publisher_encodes_a_declared_event_as_its_frame(app_events: None) -> None:
    ui = UIManager(Recipient.user("42")).with_context(jobId="j1")
    body = ui.body(declared.CartUpdated(cartId="c1", items=3))
    assert json.loads(body) == {"jobId": "j1", "type": "cart_updated", "cartId": "c1", "items": 3}


def test_the_publisher_refuses_an_event_whose_module_is_not_declared() -> None:
    ui = UIManager(Recipient.user("42"))
    with pytest.raises(UndeclaredEvent, match=r"cart_updated.*INSIGHT_EVENT_MODULES"):
        ui.body(declared.CartUpdated(cartId="c1", items=3))
    ui.body(Toast(title="t", description="", variant="info"))  # the five need no declaration


def test_the_publisher_refuses_a_model_of_the_same_name_from_another_module(
    app_events: None,
) -> None:
    with pytest.raises(UndeclaredEvent, match="cart_updated"):
        UIManager(Recipient.user("42")).body(evolved.CartUpdated(cartId="c1", items=3))


def test_a_malformed_typed_payload_is_refused_before_it_is_published() -> None:
    ui = UIManager(Recipient.user("42"))
    with pytest.raises(ValidationError) as error:
        ui.update_ui({"type": "job_progress", "percent": 100})  # raises before any Redis call
    assert {"data.jobId", "data.kind", "data.status"} <= {
        ".".join(map(str, e["loc"])) for e in error.value.errors()
    }


def test_a_typed_payload_is_sent_as_the_seeds_ui_update_without_unset_keys() -> None:
    progress = JobProgress(jobId="j1", kind="order", status="running", percent=40)
    body = UIManager(Recipient.user("42")).body(Update(data=progress.as_data()))
    assert json.loads(body) == {
        "type": "ui_update",
        "data": {"type": "job_progress", "jobId": "j1", "kind": "order", "status": "running",
                 "percent": 40},
    }  # fmt: skip
