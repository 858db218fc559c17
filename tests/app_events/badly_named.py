"""Refused: a type the wire cannot carry as a declared name."""

from __future__ import annotations

from typing import Literal

from realtime.events import AppEvent


class CartUpdated(AppEvent):
    type: Literal["Cart-Updated"] = "Cart-Updated"
