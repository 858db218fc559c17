"""What a client says when it opens a socket: the channel it asks for, the subprotocols it
offers, and its token (in the query, in a subprotocol, or in the first frame), checked here
before anything trusts it. The frames that follow are `realtime.frames`; the codes a refusal
closes with, `edge.close_codes`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from realtime.frames import DEFAULT_CHANNEL
from realtime.ids import CLIENT_PATTERN

CHANNELS = frozenset({DEFAULT_CHANNEL})

# A browser cannot put a header on a WebSocket, but it can offer subprotocols: offering
# ["insight", "insight.bearer.<JWT>"] keeps the token out of URLs; the edge selects "insight".
SUBPROTOCOL = "insight"
BEARER_SUBPROTOCOL_PREFIX = "insight.bearer."


# A JWT in compact form is base64url segments joined by dots (RFC 7515, 7.1; RFC 7519, 3).
# Anything else is refused before it reaches the verifier, which is not total: PyJWT encodes
# the token to UTF-8 first, so a lone surrogate raised UnicodeEncodeError, not InvalidToken.
# The bound is websockets' longest request or header line, which no token travelling in a
# handshake can exceed anyway.
MAX_TOKEN_LENGTH = 8192
_TOKEN = re.compile(r"[A-Za-z0-9_.-]+")


def well_formed_client(value: object) -> str | None:
    """`value` if it can name a browser tab (`client=`: 1-64 of A-Z a-z 0-9 _ -); else None."""
    return value if isinstance(value, str) and CLIENT_PATTERN.fullmatch(value) else None


def well_formed_token(value: object) -> str | None:
    """`value` if it can be a JWT (a non-empty ASCII string of base64url characters and dots,
    at most MAX_TOKEN_LENGTH long); None for anything else. Never raises."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TOKEN_LENGTH:
        return None
    return value if _TOKEN.fullmatch(value) else None


def token_from_subprotocols(offered: list[str]) -> str | None:
    """The token of the first `insight.bearer.<JWT>` subprotocol offered; None if there is
    none or it is not well formed. Never raises."""
    for protocol in offered:
        if isinstance(protocol, str) and protocol.startswith(BEARER_SUBPROTOCOL_PREFIX):
            return well_formed_token(protocol[len(BEARER_SUBPROTOCOL_PREFIX) :])
    return None


@dataclass(frozen=True, slots=True)
class AuthMessage:
    """`{"type":"auth","token":...}`; `token` is None when it is not shaped like a JWT (an auth
    message all the same: its sender gets 4401, as for a bad token anywhere else)."""

    token: str | None


def auth_message(text: str) -> AuthMessage | None:
    """The auth message `text` is, or None if it is not one. Never raises, whatever the text:
    deep nesting (RecursionError in the decoder), huge numbers (ValueError), escaped lone
    surrogates or a token of the wrong type all give None or a message without a token."""
    if not isinstance(text, str):
        return None
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or message.get("type") != "auth":
        return None
    return AuthMessage(well_formed_token(message.get("token")))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <JWT>` header if it is shaped like one; None
    for no header, another scheme, or a token that cannot be a JWT. Never raises."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return well_formed_token(token.strip())
