"""User and business ids as identity providers issue them, and the ids nobody may have: shared
by the edge, server API and job tests (docs/security.md, "Identity").

Every awkward id is made fresh for each test (`awkward`), since a disconnect leaves its
user's revocation mark in the session's Redis for JWT_MAX_TTL_SECONDS."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from urllib.parse import quote

import jwt

from tests.harness import TEST_AUDIENCE, TEST_ISSUER, TEST_JWT_SECRET

# Shapes of ids that must work everywhere, each made from a fresh tag.
SHAPES: dict[str, Callable[[str], str]] = {
    "urn": lambda tag: f"urn:user:{tag}",
    "auth0": lambda tag: f"auth0|{tag}",
    "space": lambda tag: f"a b {tag}",
    "padded": lambda tag: f" {tag} ",
    "256 characters": lambda tag: (f"{tag}:" + "ü" * 256)[:256],
    "non-ASCII": lambda tag: f"Zoë 日本 {tag} 🙂",
    "hash-tag braces": lambda tag: f"{{{tag}}}",
    "URL characters": lambda tag: f"%2F/?#&+={tag}",
}

# What no token may name as `sub` or `business_id`: refused at verification.
BAD_IDS: dict[str, object] = {
    "empty": "",
    "257 characters": "x" * 257,
    "newline": "a\nb",
    "NUL": "a\x00b",
    "DEL": "a\x7f",
    "C1 control": "a\x85b",
    "lone surrogate": "a\ud800",
    "number": 42,
    "list": ["a"],
}


def awkward(shape: str) -> tuple[str, str]:
    """A fresh user id and business id of `shape`."""
    tag = uuid.uuid4().hex[:10]
    return SHAPES[shape](tag), SHAPES[shape](f"b{tag}")


def in_path(ident: str) -> str:
    """The id as one URL path segment."""
    return quote(ident, safe="")


def signed(
    sub: object,
    *,
    business: object = None,
    iat: float | None = None,
    exp: float | None = None,
    **claims: object,
) -> str:
    """A token as an identity provider would sign it: any claims, whatever their values."""
    now = int(time.time())
    body: dict[str, object] = {
        "sub": sub,
        "iat": now if iat is None else iat,
        "exp": now + 3600 if exp is None else exp,
        "aud": TEST_AUDIENCE,
        "iss": TEST_ISSUER,
        **claims,
    }
    if business is not None:
        body["business_id"] = business
    return jwt.encode(body, TEST_JWT_SECRET, algorithm="HS256")
