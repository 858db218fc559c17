"""The seed's five calls (toast, redirect, refresh, update, modal), written once for every
manager: the synchronous and async UIManagers, and the one that waits for a commit.

Each manager decides only what `publish` does with an event and its `PublishOptions` (and so
what the five calls return: an id, an awaitable of one, or nothing until the commit).
`publish` takes any declared event, the application's own included (`realtime.registry`).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Generic, Self, TypeVar

from pydantic import JsonValue

from realtime.events import (
    Event,
    Modal,
    ModalContent,
    Redirect,
    Refresh,
    Toast,
    ToastVariant,
    Update,
    UpdatePayload,
    encode_context,
    encode_event,
)
from realtime.ids import check_client
from realtime.options import DEFAULT_OPTIONS, PublishOptions
from realtime.recipients import Recipient
from realtime.registry import event_registry

Result = TypeVar("Result")


class Manager(Generic[Result]):
    """A recipient (and maybe one of a user's browser tabs), the context keys its events
    carry, and the five calls."""

    def __init__(self, recipient: Recipient) -> None:
        self.recipient = recipient
        self.client: str | None = None
        self._context = ""

    @classmethod
    def for_user(cls, user_id: str | int, client: str | None = None) -> Self:
        """The user's connections; with `client` (a tab's id, as its sockets' `client=`),
        only that tab's while it is connected on some edge, else every one of the user's."""
        manager = cls(Recipient.user(user_id))
        manager.client = None if client is None else check_client(client)
        return manager

    @classmethod
    def for_business(cls, business_id: str | int) -> Self:
        return cls(Recipient.business(business_id))

    @classmethod
    def broadcast(cls) -> Self:
        return cls(Recipient.everyone())

    def with_context(self, **context: str) -> Self:
        """A copy whose events also carry these keys, e.g. `jobId=...` for events about a job."""
        twin = copy.copy(self)
        twin._context = encode_context(context)
        return twin

    def body(self, event: Event) -> str:
        """The event's frame body as stored and sent: its JSON, the context keys first.
        Raises UndeclaredEvent (a ValueError) for a type this process did not declare."""
        encoded = encode_event(event_registry().check(event))
        return "{" + self._context + encoded[1:] if self._context else encoded

    def publish(self, event: Event, options: PublishOptions = DEFAULT_OPTIONS) -> Result:
        raise NotImplementedError

    def scoped(self, options: PublishOptions) -> PublishOptions:
        """`options`, for this manager's tab when it has one and they name none."""
        if self.client is None or options.client is not None:
            return options
        return dataclasses.replace(options, client=self.client)

    def redirect(
        self, path: str, *, ttl: float | None = None, idempotency_key: str | None = None
    ) -> Result:
        """Send the browser to `path`."""
        return self.publish(Redirect(target=path), PublishOptions(ttl, None, idempotency_key))

    def show_toast(
        self,
        title: str,
        description: str,
        variant: ToastVariant,
        *,
        ttl: float | None = None,
        idempotency_key: str | None = None,
    ) -> Result:
        """Show a toast; variant is success, error, warning or info."""
        toast = Toast(title=title, description=description, variant=variant)
        return self.publish(toast, PublishOptions(ttl, None, idempotency_key))

    def refresh(self, *, ttl: float | None = None, idempotency_key: str | None = None) -> Result:
        """Reload the page."""
        return self.publish(Refresh(), PublishOptions(ttl, None, idempotency_key))

    def update_ui(
        self,
        data: JsonValue | UpdatePayload,
        *,
        coalesce_key: str | None = None,
        ttl: float | None = None,
        idempotency_key: str | None = None,
        version: int | None = None,
    ) -> Result:
        """Hand `data` to the page's ui-update listeners: any JSON, or a typed payload
        (`realtime.payloads`; the optional keys it was not given left out).

        With `coalesce_key`, a newer update with the same key replaces an older one still
        waiting in a slow client's send buffer (use it for state snapshots, not deltas). With
        `version` too, an update below the newest version of its key is dropped, so a late
        snapshot of an older fact never follows a newer one (see `PublishOptions`).
        """
        if isinstance(data, UpdatePayload):
            data = data.as_data()
        options = PublishOptions(ttl, coalesce_key, idempotency_key, version=version)
        return self.publish(Update(data=data), options)

    def show_modal(
        self,
        modal_type: str,
        payload: JsonValue = None,
        *,
        ttl: float | None = None,
        idempotency_key: str | None = None,
    ) -> Result:
        """Open the modal `modal_type` with `payload`."""
        content = ModalContent(type=modal_type, payload={} if payload is None else payload)
        return self.publish(Modal(data=content), PublishOptions(ttl, None, idempotency_key))
