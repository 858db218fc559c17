"""Refusals as JSON a client can always read: the body limit (413), invalid input (422), CORS.

Hostile input must never turn a refusal into a 500 (docs/security.md, "Hostile input never hangs,
crashes or leaks"). A 422 names the fields in the request but never echoes what was in them:
a NaN, an Infinity or a lone surrogate cannot be encoded, and echoing a whole body back is a
leak of its own. The 413 is the same JSON whether the client announced the size of its body
or streamed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import redis
from fastapi import HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisClusterException
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.middleware import HttpMiddleware
from realtime import NotReplicated


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"request body over the limit of {limit} bytes",
            {"Connection": "close"},
        )


# A streamed body refused for its size: how much more of it is read and dropped before the
# 413, and for how long at most. Closing a socket with unread data in it makes the kernel
# reset the connection, which can destroy the 413 before the client reads it; a client that
# sent only a little past the limit gets its answer, an endless body is cut off anyway.
DRAIN_BYTES = 256 * 1024
DRAIN_SECONDS = 1.0


class BodyLimit(HttpMiddleware):
    """Refuse a request body over `max_bytes` with a JSON 413: at once, unread, when its
    Content-Length says so; else as soon as the chunks received pass the limit (after
    reading what the client has still sent, within DRAIN_BYTES and DRAIN_SECONDS)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = declared_length(Headers(scope=scope).get("content-length", ""))
        if declared is not None and declared > self.max_bytes:
            await _problem(BodyTooLarge(self.max_bytes))(scope, receive, send)
            return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if message.get("more_body", False):
                        await _discard_the_rest(receive)
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge as refusal:  # read outside the routes' exception handling
            if started:
                raise
            await _problem(refusal)(scope, receive, send)


def declared_length(value: str) -> int | None:
    """A Content-Length's number (ASCII digits only), or None if it is not one. Past 18
    digits, leading zeros aside, it is read as sys.maxsize: over any limit, where int() would
    refuse a string of thousands of digits (a stranger's 500)."""
    if not (value.isascii() and value.isdigit()):
        return None
    digits = value.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else sys.maxsize


async def _discard_the_rest(receive: Receive) -> None:
    """Read and drop the body's remaining chunks, DRAIN_BYTES and DRAIN_SECONDS at most."""
    discarded = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_SECONDS):
            while discarded <= DRAIN_BYTES:
                message = await receive()
                if message["type"] != "http.request":
                    return
                discarded += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return


def _problem(error: HTTPException) -> Response:
    return JSONResponse({"detail": error.detail}, error.status_code, error.headers)


async def invalid_request(request: Request, error: Exception) -> Response:
    """422 naming each field that was wrong (`loc`), with why (`msg`, `type`, `ctx`), and
    never its value (`input`): the body always encodes, whatever was sent."""
    assert isinstance(error, RequestValidationError)
    return JSONResponse(
        {"detail": [_field_error(e) for e in error.errors()]},
        status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


def _field_error(error: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "loc": [part if isinstance(part, int) else _text(part) for part in error["loc"]],
        "msg": _text(error["msg"]),
        "type": _text(error["type"]),
    }
    context = error.get("ctx")
    if isinstance(context, Mapping) and context:
        out["ctx"] = {_text(key): _scalar(value) for key, value in context.items()}
    return out


def _text(value: object) -> str:
    """`value` as text that encodes as UTF-8: a lone surrogate becomes its `\\udXXX` escape."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def _scalar(value: object) -> object:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _text(value)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_scalar(item) for item in value]
    return _text(value)


class JsonCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, with a refused preflight answered in JSON like every other 4xx."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        headers = {
            key: value
            for key, value in response.headers.items()
            if key not in ("content-length", "content-type")
        }
        detail = bytes(response.body).decode("utf-8", "replace")
        return JSONResponse({"detail": detail}, response.status_code, headers)


# -- 503: the events Redis could not do it ----------------------------------------------

RETRY_AFTER_SECONDS = 1  # the Retry-After of every 503 for the events Redis


# What a call of the events Redis raises when Redis cannot answer it (down, unreachable,
# timed out, a cluster without a node for the slot): a 503 with Retry-After, never a 500.
# RedisClusterException is not a RedisError.
REDIS_FAILURES = (redis.RedisError, RedisClusterException, OSError)


def unavailable(error: Exception) -> str:
    """Why the events Redis could not do what was asked, for a 503's detail: never the
    error's own text, but for NotReplicated, how many replicas confirmed the write (it was
    made, and is not yet as durable as EVENTS_MIN_REPLICAS asks)."""
    if isinstance(error, NotReplicated):
        return f"{error} (EVENTS_MIN_REPLICAS)"
    return "the events Redis did not answer"
