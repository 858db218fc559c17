"""GET /presence/users/{id} and /presence/businesses/{id}: who is connected, on every edge.

Server API: a key from PUBLISH_API_KEYS (api.deps.server_key). Each read is one Redis script
over one key, whatever the number of users online (see realtime/presence.py): a user's costs
O(edges holding that user), a business's O(its members online).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path, status
from pydantic import AfterValidator, BaseModel, Field
from starlette.convertors import Convertor, register_url_convertor

from api.deps import server_key
from api.refusals import REDIS_FAILURES, RETRY_AFTER_SECONDS, unavailable
from api.schemas import Problem, refusals
from realtime import AsyncUIManager, Recipient
from realtime.ids import ID_PATTERN, MAX_ID_LENGTH, check_id
from realtime.presence import members_async
from realtime.publisher import default_async_event_log

logger = logging.getLogger(__name__)

router = APIRouter(tags=["presence"], dependencies=[Depends(server_key)])

T = TypeVar("T")


class _AnyText(Convertor[str]):
    """Path text of any characters, `/` and newlines included (`:path` stops at a newline),
    so that every id reaches validation: a 422 naming it, never a routing 404."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("recipient_id", _AnyText())


def recipient_id(what: str) -> Any:
    """A path parameter naming a user or business (`{user_id:recipient_id}`): any id a token
    may carry (`realtime.ids`), URL-encoded in the path (`urn%3Auser%3A42`, a `/` as `%2F`)."""
    return Path(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=ID_PATTERN.pattern,
        description=f"A {what} id, URL-encoded",
        examples=["42" if what == "user" else "b1"],
    )


UserId = Annotated[str, recipient_id("user"), AfterValidator(check_id)]
BusinessId = Annotated[str, recipient_id("business"), AfterValidator(check_id)]


def server_responses(answer: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """The answers of a server API route: `answer`, or a refusal."""
    documented = refusals(401, 403, 422)
    documented[200] = {"content": {"application/json": {"example": answer}}}
    documented[401] |= {
        "description": "No server key, or one that is not in PUBLISH_API_KEYS",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}},
    }
    documented[403] |= {"description": "A user's JWT, which is never a server credential"}
    documented[503] = {
        "model": Problem,
        "description": "Redis did not answer, or fewer replicas than EVENTS_MIN_REPLICAS "
        "confirmed the write; retry after Retry-After seconds",
        "headers": {"Retry-After": {"schema": {"type": "string"}, "required": True}},
    }
    return documented


async def answered(call: Callable[[], Awaitable[T]], what: str) -> T:
    """`call()`, with Redis not answering turned into a 503 (never a 500)."""
    try:
        return await call()
    except REDIS_FAILURES as error:
        logger.warning("%s: Redis did not answer: %r", what, error)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"{what}: {unavailable(error)}",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from None


class UserPresence(BaseModel):
    user_id: str
    online: bool = Field(description="Whether the user has a socket open on some edge")
    connections: int = Field(description="The user's open sockets, on every edge")


class MemberPresence(BaseModel):
    user_id: str
    connections: int


class BusinessPresence(BaseModel):
    business_id: str
    users: list[MemberPresence] = Field(
        description="The business's users with a socket open, by user id"
    )


@router.get(
    "/presence/users/{user_id:recipient_id}",
    response_model=UserPresence,
    summary="Whether a user is connected, and how many sockets",
    responses=server_responses({"user_id": "42", "online": True, "connections": 2}),
)
async def user_presence(user_id: UserId) -> UserPresence:
    """The user's open sockets on every edge. An edge that died (kill -9) stops counting
    within PRESENCE_TTL_SECONDS."""
    count = await answered(AsyncUIManager.for_user(user_id).connections, "presence")
    return UserPresence(user_id=user_id, online=count > 0, connections=count)


@router.get(
    "/presence/businesses/{business_id:recipient_id}",
    response_model=BusinessPresence,
    summary="The connected users of a business",
    responses=server_responses(
        {"business_id": "b1", "users": [{"user_id": "42", "connections": 2}]}
    ),
)
async def business_presence(business_id: BusinessId) -> BusinessPresence:
    """Every user whose token carries this `business_id` and who has a socket open, with
    their sockets on every edge; a connect shows here within a Redis round trip."""

    async def read() -> dict[str, int]:
        log = await default_async_event_log()
        return await members_async(log.driver, Recipient.business(business_id))

    found = await answered(read, "presence")
    return BusinessPresence(
        business_id=business_id,
        users=[MemberPresence(user_id=u, connections=n) for u, n in sorted(found.items())],
    )
