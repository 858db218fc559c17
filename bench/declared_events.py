"""The application event `python -m bench.app_events` publishes: a toast's fields under a type
of the application's own, so that the two differ only in being declared by the application."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from realtime.events import AppEvent, ToastVariant


class Notice(AppEvent):
    """A toast's shape, declared by the application (INSIGHT_EVENT_MODULES)."""

    type: Literal["bench_notice"] = "bench_notice"
    title: str = Field(min_length=1, max_length=500)
    description: str = Field(max_length=5000)
    variant: ToastVariant
