"""Refused: a ui_update payload that shadows Insight's own `job_progress`."""

from __future__ import annotations

from typing import Literal

from realtime.events import UpdatePayload


class MyProgress(UpdatePayload):
    type: Literal["job_progress"] = "job_progress"
    ratio: float
