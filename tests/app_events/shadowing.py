"""Refused: a type that shadows one of Insight's five."""

from __future__ import annotations

from typing import Literal

from realtime.events import AppEvent


class MyToast(AppEvent):
    type: Literal["ui_toast"] = "ui_toast"
    text: str
