"""Which local connections listen on each live channel, and as which of their recipients.

Most live channels have one listener here: a user's channel with one tab open. A dict for
that one entry took 232 bytes for each socket an edge holds (bench/results/design-figures.md),
so a channel keeps a bare (connection, recipient index) pair until a second listener comes,
and goes back to a pair when the second one leaves.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from edge.connection import ClientConnection

Listener = tuple[ClientConnection, int]  # a connection and its recipient's index in it


class Listeners:
    """Channel -> its listeners: one pair, or a dict once there are several."""

    __slots__ = ("_by_channel",)

    def __init__(self) -> None:
        self._by_channel: dict[bytes, Listener | dict[ClientConnection, int]] = {}

    def add(self, channel: bytes, connection: ClientConnection, index: int) -> None:
        listening = self._by_channel.get(channel)
        if listening is None or (isinstance(listening, tuple) and listening[0] is connection):
            self._by_channel[channel] = (connection, index)
        elif isinstance(listening, tuple):
            self._by_channel[channel] = {listening[0]: listening[1], connection: index}
        else:
            listening[connection] = index

    def remove(self, channel: bytes, connection: ClientConnection) -> None:
        listening = self._by_channel.get(channel)
        if isinstance(listening, tuple):
            if listening[0] is connection:
                del self._by_channel[channel]
        elif listening is not None:
            listening.pop(connection, None)
            if len(listening) == 1:
                [only] = listening.items()
                self._by_channel[channel] = only
            elif not listening:
                del self._by_channel[channel]

    def on(self, channel: bytes) -> Collection[Listener]:
        """The channel's listeners (empty if none), to iterate once: a 1-tuple of the pair,
        or a view of the dict, which a connection leaving meanwhile would change."""
        listening = self._by_channel.get(channel)
        if listening is None:
            return ()
        if isinstance(listening, tuple):
            return (listening,)
        return listening.items()

    def connections(self, channels: Iterable[bytes]) -> set[ClientConnection]:
        """Every connection listening on any of `channels`."""
        return {connection for channel in channels for connection, _ in self.on(channel)}

    def __len__(self) -> int:
        """How many channels have a listener."""
        return len(self._by_channel)
