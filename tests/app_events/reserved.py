"""Refused: a type in the edge's own `insight_` namespace."""

from __future__ import annotations

from typing import Literal

from realtime.events import AppEvent


class Ping(AppEvent):
    type: Literal["insight_ping"] = "insight_ping"
