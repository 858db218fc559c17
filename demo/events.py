"""The demo's own event, declared as any application declares one: a Pydantic model on
`AppEvent`, in a module named by INSIGHT_EVENT_MODULES (`insight run` names this one). The
demo page and the Next.js example show it; `insight schema` types it."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from realtime.events import AppEvent


class Celebration(AppEvent):
    """Someone in the business asked every member's page to celebrate (confetti)."""

    # Confetti a minute late, after a reconnect, would celebrate nothing.
    default_ttl_seconds: ClassVar[int] = 30
    type: Literal["ui_confetti"] = "ui_confetti"
    by: str = Field(min_length=1, max_length=100, description="Who asked: a display name")
    message: str = Field(max_length=200)
