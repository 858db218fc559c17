"""The edge's plain HTTP answers (the SSE route's refusals, the ticket route's): JSON a client
can always read, naming what was wrong, with the header that tells it what to do next."""

from __future__ import annotations

from starlette.responses import JSONResponse

from edge.close_codes import CloseCode

RETRY_AFTER_SECONDS = 5  # 429 and 503: the edge's suggestion, as a WebSocket's backoff

# A refusal's WebSocket close code as the HTTP status a request gets before its stream opens.
STATUS_OF = {
    CloseCode.MALFORMED: 400,
    CloseCode.UNAUTHORIZED: 401,
    CloseCode.FORBIDDEN: 403,
    CloseCode.TOO_MANY_CONNECTIONS: 429,
    CloseCode.TRY_AGAIN_LATER: 503,
    CloseCode.SERVER_RESTARTING: 503,
}


def refusal(status: int, detail: str, field: str | None = None) -> JSONResponse:
    """`{"detail": ..., "field": ...}` with `status`, and the headers its client needs:
    `WWW-Authenticate` on a 401, `Retry-After` on a 429 or a 503; never cached."""
    body: dict[str, object] = {"detail": detail}
    if field is not None:
        body["field"] = field
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if status in (429, 503):
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return JSONResponse(body, status_code=status, headers=headers)


def refusal_of(code: CloseCode, detail: str, field: str | None = None) -> JSONResponse:
    """The HTTP refusal of a session refused with WebSocket close code `code`."""
    return refusal(STATUS_OF[code], detail, field)
