"""Signed webhook delivery, as Stripe does it: `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256
of "<t>.<payload>" with the endpoint secret>`, retried with backoff until a 2xx."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from typing import Any

import httpx

logger = logging.getLogger(__name__)


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header for `payload`."""
    stamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + payload, hashlib.sha256)
    return f"t={stamp},v1={digest.hexdigest()}"


class WebhookSender:
    """Posts events to one endpoint in the background; remembers them for re-sending."""

    def __init__(self, url: str | None, secret: str | None, attempts: int = 5) -> None:
        self.url = url
        self.secret = secret
        self.attempts = attempts
        self.events: dict[str, bytes] = {}
        self.delivered: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    def send(self, event_type: str, obj: dict[str, Any]) -> None:
        event = {
            "id": f"evt_{secrets.token_hex(12)}",
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "livemode": False,
            "api_version": "2024-06-20",
            "pending_webhooks": 1,
            "data": {"object": json.loads(json.dumps(obj))},
            "request": {"id": None, "idempotency_key": None},
        }
        payload = json.dumps(event).encode()
        event_id = str(event["id"])
        self.events[event_id] = payload
        self._post_later(event_id, payload)

    def resend(self, event_id: str) -> bool:
        payload = self.events.get(event_id)
        if payload is None:
            return False
        self._post_later(event_id, payload)
        return True

    def _post_later(self, event_id: str, payload: bytes) -> None:
        if not self.url or not self.secret:
            return
        task = asyncio.get_running_loop().create_task(self._deliver(event_id, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, event_id: str, payload: bytes) -> None:
        assert self.url is not None
        assert self.secret is not None
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=10)
        delay = 0.2
        for attempt in range(1, self.attempts + 1):
            try:
                response = await self._client.post(
                    self.url,
                    content=payload,
                    headers={
                        "Content-Type": "application/json",
                        "Stripe-Signature": sign(payload, self.secret),
                    },
                )
                if response.is_success:
                    self.delivered.append(event_id)
                    return
                logger.warning(
                    "webhook refused", extra={"event": event_id, "status": response.status_code}
                )
            except httpx.HTTPError as error:
                logger.warning("webhook failed", extra={"event": event_id, "error": str(error)})
            if attempt < self.attempts:
                await asyncio.sleep(delay)
                delay *= 2

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._client is not None:
            await self._client.aclose()
