"""Refused: a module that does not import."""

from __future__ import annotations

import insight_no_such_module  # type: ignore[import-not-found]  # noqa: F401
