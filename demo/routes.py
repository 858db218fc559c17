"""The demo's routes: its two pages, its configuration, and tokens for a fixed cast of users."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Request, status
from fastapi.responses import FileResponse

from core.config import Settings
from core.security import issue_token

STATIC = Path(__file__).resolve().parent / "static"

# Two businesses, a few people each: open two windows as two members of one business.
DEMO_USERS: dict[str, tuple[str, str]] = {
    "alice": ("Alice", "acme"),
    "bob": ("Bob", "acme"),
    "carol": ("Carol", "globex"),
    "dave": ("Dave", "globex"),
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def demo_page() -> FileResponse:
    return FileResponse(STATIC / "demo.html")


@router.get("/orders")
async def orders_page() -> FileResponse:
    return FileResponse(STATIC / "orders.html")


@router.get("/demo/config")
async def demo_config(request: Request) -> dict[str, object]:
    settings: Settings = request.app.state.settings
    return {
        "apiUrl": settings.public_api_url.rstrip("/"),
        "users": [
            {"id": user, "name": name, "business": business}
            for user, (name, business) in DEMO_USERS.items()
        ],
    }


@router.post("/demo/token")
async def demo_token(
    request: Request,
    user: Annotated[str, Body(embed=True)],
    ttl: Annotated[int, Body(embed=True, ge=2, le=3600)] = 900,
) -> dict[str, str]:
    """A token for one of the demo users, so the demo runs without an identity provider."""
    settings: Settings = request.app.state.settings
    if user not in DEMO_USERS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"user: one of {sorted(DEMO_USERS)}"
        )
    name, business = DEMO_USERS[user]
    token = issue_token(settings, user, business_id=business, name=name, ttl_seconds=ttl)
    return {"token": token, "user": user, "business": business}
