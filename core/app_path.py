"""The request path as an app's routes spell it, shared by the job API's middleware and the
edge's own routing: without the ASGI root path, so that a proxy's prefix changes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def app_path(scope: Mapping[str, Any]) -> str:
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path
