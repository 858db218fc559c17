"""The live demo: pages at / and /orders, their files at /demo/static, and tokens for a fixed
cast of demo users. The edge mounts it only when the demo is on (DEMO_ENABLED; by default in
development only), and imports it only then: a production edge carries none of it."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from demo.routes import STATIC, router


def mount(app: FastAPI) -> None:
    """Serve the demo's pages, configuration, tokens and files from the edge's app."""
    app.include_router(router)
    app.mount("/demo/static", StaticFiles(directory=STATIC), name="demo-static")
