"""Re-exports a declared event without defining one: naming this module declares nothing (an
event counts in the module that defines it)."""

from tests.app_events.declared import CartUpdated

__all__ = ["CartUpdated"]
