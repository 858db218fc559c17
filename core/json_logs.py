"""Structured JSON log lines for every process, with secrets redacted before they are written.

Tokens travel in query strings (`?token=`), headers (`Bearer ...`) and subprotocols, and
uvicorn logs request lines verbatim; the redaction filter sits on every handler we install,
so no formatter downstream ever sees the secret.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

_SECRET_PATTERNS = (
    # query-string or form parameters that carry credentials
    re.compile(r"(?i)(\b(?:access_)?(?:token|jwt|api_key|secret|password)=)[^&\s\"']+"),
    # Authorization headers
    re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+"),
    # anything shaped like a JWT (three base64url segments, header starting "eyJ")
    re.compile(r"()eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),
    # Stripe-style keys
    re.compile(r"()\b(?:sk|rk|whsec)_[A-Za-z0-9_]{8,}"),
)

# The request (X-Request-ID) and job a line is about: set by the API's middleware and by the
# worker around each task, added to every line logged meanwhile.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
job_id: ContextVar[str | None] = ContextVar("job_id", default=None)

_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's ANSI-coloured duplicate of msg
}


def redact(text: str) -> str:
    """Replace every credential-looking substring with a marker."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1[redacted]", text)
    return text


class RedactSecrets(logging.Filter):
    """Render the message once, redacted, so later formatting cannot reintroduce the secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


class CorrelationFields(logging.Filter):
    """Stamp each record with the current request and job ids, when there are any."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in (("request_id", request_id), ("job_id", job_id)):
            value = var.get()
            if value is not None and not hasattr(record, name):
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, default=str)


def configure_logging(level: str = "INFO") -> None:
    """Route the root logger and uvicorn's loggers to one redacting JSON handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecrets())
    handler.addFilter(CorrelationFields())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    access = logging.getLogger("uvicorn.access")
    # `uvicorn --no-access-log` leaves the access logger without handlers and not propagating
    # (before the app, which calls this, is imported): it stays off, and costs nothing.
    access_off = not access.handlers and not access.propagate
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = not (logger is access and access_off)
        logger.setLevel(logging.NOTSET)  # LOG_LEVEL governs them too
