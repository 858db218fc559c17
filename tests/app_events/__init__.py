"""Event modules of a test application (INSIGHT_EVENT_MODULES), good and bad, and a way for
this test process to declare them as a producer would."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from realtime.registry import event_registry
from realtime.settings import events_settings

DECLARED = "tests.app_events.declared"
EVOLVED = "tests.app_events.evolved"


@contextlib.contextmanager
def declaring(*modules: str) -> Iterator[None]:
    """This process reads `modules` as its INSIGHT_EVENT_MODULES, then what it read before."""
    saved = os.environ.get("INSIGHT_EVENT_MODULES")
    os.environ["INSIGHT_EVENT_MODULES"] = ",".join(modules)
    events_settings.cache_clear()
    event_registry.cache_clear()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("INSIGHT_EVENT_MODULES", None)
        else:
            os.environ["INSIGHT_EVENT_MODULES"] = saved
        events_settings.cache_clear()
        event_registry.cache_clear()
