"""The demo's routes: its two pages, its configuration, tokens for a fixed cast of users, and
a celebration (the demo's own event, demo/events.py) for everyone in the caller's business."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import redis
from fastapi import APIRouter, Body, HTTPException, Request, status
from fastapi.responses import FileResponse

from core.config import Settings
from core.security import InvalidToken, issue_token, verify_token_async
from demo.events import Celebration
from edge.handshake import bearer_token
from realtime import AsyncUIManager
from realtime.registry import UndeclaredEvent

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


@router.post("/demo/celebrate")
async def celebrate(
    request: Request, message: Annotated[str, Body(embed=True, max_length=200)] = "Well done!"
) -> dict[str, str]:
    """Confetti on the page of every member of the caller's business: the demo's own event,
    published like the five (Authorization: Bearer <a demo token>)."""
    settings: Settings = request.app.state.settings
    token = bearer_token(request.headers.get("authorization"))
    try:
        if token is None:
            raise InvalidToken("no bearer token")
        identity = await verify_token_async(token, settings)
    except InvalidToken:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "a demo token", {"WWW-Authenticate": "Bearer"}
        ) from None
    ui = (
        AsyncUIManager.for_business(identity.business_id)
        if identity.business_id
        else AsyncUIManager.for_user(identity.user_id)
    )
    try:
        event_id = await ui.publish(
            Celebration(by=(identity.name or identity.user_id)[:100], message=message)
        )
    except UndeclaredEvent:
        raise HTTPException(
            status.HTTP_409_CONFLICT, "INSIGHT_EVENT_MODULES does not name demo.events"
        ) from None
    except (redis.RedisError, OSError):
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "Redis did not answer", {"Retry-After": "1"}
        ) from None
    return {"id": event_id}
