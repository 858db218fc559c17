"""Refused: a type that names more than one event."""

from __future__ import annotations

from typing import Literal

from realtime.events import AppEvent


class Either(AppEvent):
    type: Literal["cart_opened", "cart_closed"]
