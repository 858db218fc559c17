"""When each open session's token stops being accepted, on the process's timer wheel.

A session ends with 4401 once its token is no longer accepted (`exp` plus the leeway,
`core.security.accepted_until`), and an in-band renewal moves that moment. Its timer waits on
`edge.second_wheel`, which keeps it to the second without a loop timer per session: a session
closes within a second after its token stops being accepted, never before it.
"""

from __future__ import annotations

import time

from edge.close_codes import CloseCode
from edge.connection import ClientConnection
from edge.second_wheel import OnTheWheel


class Expiry(OnTheWheel):
    """Closes the connection with 4401 when its token is no longer accepted; `move` for a
    renewal, `cancel` when the session ends."""

    __slots__ = ("_connection",)

    def __init__(self, connection: ClientConnection, until: float) -> None:
        super().__init__()
        self._connection = connection
        self.move(until)

    def move(self, until: float) -> None:
        """From now on, close at `until` (wall-clock seconds) instead."""
        self.start(until - time.time())

    def expired(self) -> None:
        self._connection.close(CloseCode.UNAUTHORIZED)
