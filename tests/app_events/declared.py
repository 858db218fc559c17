"""A test application's own events and a typed ui_update payload, as an app declares them."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from realtime.events import AppEvent, UpdatePayload


class CartUpdated(AppEvent):
    """The user's cart changed: the page redraws its badge."""

    type: Literal["cart_updated"] = "cart_updated"
    cartId: str = Field(min_length=1, max_length=64)
    items: int = Field(ge=0)


class Confetti(AppEvent):
    """A celebration: worth nothing a minute later."""

    default_ttl_seconds: ClassVar[int] = 60
    type: Literal["ui_confetti"] = "ui_confetti"
    colors: list[str] = Field(default_factory=list, max_length=8)


class InventoryChanged(UpdatePayload):
    """Stock left of one product, sent as a ui_update."""

    type: Literal["inventory_changed"] = "inventory_changed"
    sku: str
    left: int = Field(ge=0)


class _Audited(AppEvent):
    """A base of this module's own: no type of its own, so not an event."""

    actor: str = "system"


class CartAbandoned(_Audited):
    """A subclass of that base: an event, with the base's fields."""

    type: Literal["cart_abandoned"] = "cart_abandoned"


class CartSnapshot(AppEvent):
    """The whole cart, for the page to redraw: a state snapshot, so coalescible."""

    type: Literal["cart_snapshot"] = "cart_snapshot"
    n: int
    lines: str = Field(max_length=20_000)
