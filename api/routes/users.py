"""POST /users/{id}/disconnect: log a user out everywhere, from the server side.

Server API: a key from PUBLISH_API_KEYS (api.deps.server_key). One Redis script over the
user's slot sets the revocation mark and announces it (see realtime/presence.py).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from api.deps import server_key
from api.routes.presence import UserId, answered, server_responses
from realtime import AsyncUIManager

router = APIRouter(tags=["users"], dependencies=[Depends(server_key)])


class Disconnected(BaseModel):
    user_id: str
    revoked_at: int = Field(
        description="The revocation mark: the user's tokens issued in or before this second "
        "(Unix time, by the Redis clock; `iat` has second resolution) are refused from now on"
    )


@router.post(
    "/users/{user_id:recipient_id}/disconnect",
    response_model=Disconnected,
    summary="Close every socket of a user and refuse the user's current tokens",
    responses=server_responses({"user_id": "42", "revoked_at": 1796116368}),
)
async def disconnect(user_id: UserId) -> Disconnected:
    """`user_id` is any id a token's `sub` may be, URL-encoded (`urn%3Auser%3A42`).

    Every socket of the user on every edge closes with 4401 `revoked` within a second,
    and the user's tokens issued up to now are refused, at the edges (4401 `revoked`) and
    here (401), for as long as any of them can be accepted (JWT_MAX_TTL_SECONDS, plus the
    leeway JWT_LEEWAY_SECONDS `exp` is checked with, plus a second). Tokens issued in
    the same second as the call are refused too: a client that signs in again is given a
    token the next second."""
    revoke = AsyncUIManager.for_user(user_id).disconnect
    return Disconnected(user_id=user_id, revoked_at=await answered(revoke, "disconnect"))
