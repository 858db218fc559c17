"""What the per-connection cursor costs the fan-out of one broadcast event.

Every frame's `id` is now the receiving connection's whole cursor, so the edge splices it in
front of the event's body, which is serialised once (`realtime.frames.splice`), for each
receiver. Before, one frame was encoded once and the same bytes written to every socket.
This times both fan-outs in one process and one run, over the same connections: the real
`ClientConnection.offer` (advance the position, build the cursor, splice, frame), against
writing one prebuilt frame to each. The sockets are left out of both: each connection's
writer keeps the frame it is handed, as a socket's transport buffer would.

    .venv/bin/python -m bench.cursor_cost --connections 10000 --events 50
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from core.security import Identity
from edge.connection import ClientConnection
from edge.frame_writer import text_frame
from realtime.broker.log_calls import start_position
from realtime.frames import parse_event_id, splice
from realtime.recipients import recipients_of


class _Kept:
    """A writer that takes every frame, as an idle socket's transport does."""

    __slots__ = ("frames",)

    def __init__(self) -> None:
        self.frames = 0

    def write_frame(self, frame: bytes) -> bool:
        self.frames += 1
        return True

    def takes_data(self) -> bool:
        return True

    async def wait_writable(self) -> None:
        return None


def _connections(count: int) -> list[ClientConnection]:
    connections = []
    for n in range(count):
        identity = Identity(f"u{n}", "b1", None, time.time() + 3600)
        recipients = recipients_of(identity.user_id, identity.business_id)
        positions = [start_position(r.letter, (1_796_000_000, 0)) for r in recipients]
        connection = ClientConnection(identity, recipients, positions, 256, _Kept())
        for index in range(len(recipients)):
            connection.adopt_epoch(index, "1")
        connection.go_live(announce=False)
        connections.append(connection)
    return connections


def measure(connections: int, events: int) -> dict[str, float]:
    """CPU µs per delivery, spliced per connection and prebuilt once, medians over events."""
    receivers = _connections(connections)
    body = b'{"type":"ui_toast","title":"Maintenance","description":"At 22:00","variant":"info"}'
    spliced: list[float] = []
    prebuilt: list[float] = []
    for n in range(events):
        event_id = f"a1.{1_796_000_001_000_000 + n}-0"
        event, encoded = parse_event_id(event_id), event_id.encode()
        assert event is not None
        started = time.process_time()
        for connection in receivers:
            connection.offer(2, event, encoded, "", body)  # everyone's log: index 2
        spliced.append((time.process_time() - started) / connections * 1e6)
        started = time.process_time()
        frame = text_frame(splice(encoded, body))
        for connection in receivers:
            assert connection.wire is not None
            connection.wire.write_frame(frame)
        prebuilt.append((time.process_time() - started) / connections * 1e6)
    ours, before = statistics.median(spliced), statistics.median(prebuilt)
    return {
        "connections": connections,
        "events": events,
        "per_connection_cursor_us": round(ours, 3),
        "one_frame_for_all_us": round(before, 3),
        "ratio": round(ours / before, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=50)
    args = parser.parse_args()
    print(json.dumps(measure(args.connections, args.events)))


if __name__ == "__main__":
    main()
