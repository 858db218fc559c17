"""`declared.CartUpdated`, a release later: it gained an optional field."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from realtime.events import AppEvent


class CartUpdated(AppEvent):
    """The user's cart changed: the page redraws its badge (and the coupon applied)."""

    type: Literal["cart_updated"] = "cart_updated"
    cartId: str = Field(min_length=1, max_length=64)
    items: int = Field(ge=0)
    coupon: str | None = None
