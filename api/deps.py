"""Dependencies: who is calling (from the Bearer JWT) and a database session per request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from core.config import Settings
from core.db import new_session
from core.security import Identity, InvalidToken, verify_token

_bearer = HTTPBearer(auto_error=False, description="A JWT; `insight token` mints one.")


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def current_user(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    settings: Annotated[Settings, Depends(get_app_settings)],
) -> Identity:
    """The caller, by the same verification as the edge's (core.security).

    Synchronous on purpose: FastAPI runs it in its threadpool, so when the identity
    provider's key set must be fetched (JWT_JWKS_URL), that wait never blocks the event loop.
    """
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing bearer token", {"WWW-Authenticate": "Bearer"}
        )
    try:
        return verify_token(credentials.credentials, settings)
    except InvalidToken:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid or expired token",
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from None


def db_session() -> Iterator[Session]:
    session = new_session()
    try:
        yield session
    finally:
        session.close()


CurrentUser = Annotated[Identity, Depends(current_user)]
SessionDep = Annotated[Session, Depends(db_session)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
