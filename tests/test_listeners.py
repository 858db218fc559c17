"""The hub's routing table (`edge.listeners.Listeners`): whatever order connections come and
go in, each channel lists exactly the connections listening on it, with their recipient's
index; and a channel with one listener costs a pair, not a dict."""

from __future__ import annotations

import random
import tracemalloc
from typing import Any

import pytest

from edge.listeners import Listeners


class Connection:
    """Stands for a ClientConnection: the table only hashes and compares them."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def as_dict(listeners: Listeners, channel: bytes) -> dict[Any, int]:
    pairs = list(listeners.on(channel))
    found = dict(pairs)
    assert len(found) == len(pairs)  # no connection listed twice
    return found


@pytest.mark.parametrize("seed", range(20))
def test_the_table_matches_a_plain_model_through_any_order_of_comings_and_goings(
    seed: int,
) -> None:
    rng = random.Random(seed)
    channels = [f"ch{n}".encode() for n in range(4)]
    connections = [Connection(f"c{n}") for n in range(6)]
    table = Listeners()
    model: dict[bytes, dict[Any, int]] = {}
    for _ in range(2_000):
        channel, connection = rng.choice(channels), rng.choice(connections)
        if rng.random() < 0.55:
            index = rng.randrange(3)
            table.add(channel, connection, index)  # type: ignore[arg-type]
            model.setdefault(channel, {})[connection] = index
        else:
            table.remove(channel, connection)  # type: ignore[arg-type]
            model.get(channel, {}).pop(connection, None)
            if not model.get(channel, True):
                del model[channel]
        for each in channels:
            assert as_dict(table, each) == model.get(each, {})
        assert len(table) == len(model)
        assert table.connections(channels) == {c for ls in model.values() for c in ls}


def test_removing_a_connection_that_does_not_listen_changes_nothing() -> None:
    table = Listeners()
    one, other = Connection("one"), Connection("other")
    table.remove(b"ch", one)  # type: ignore[arg-type]
    table.add(b"ch", one, 0)  # type: ignore[arg-type]
    table.remove(b"ch", other)  # type: ignore[arg-type]
    table.remove(b"elsewhere", one)  # type: ignore[arg-type]
    assert as_dict(table, b"ch") == {one: 0}


def test_a_channel_with_one_listener_costs_a_pair_not_a_dict() -> None:
    """What an edge holding tens of thousands of one-tab users pays per socket here."""
    connections = [Connection(f"c{n}") for n in range(2_000)]
    channels = [f"user:{n}".encode() for n in range(2_000)]
    table = Listeners()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for channel, connection in zip(channels, connections, strict=True):
            table.add(channel, connection, 0)  # type: ignore[arg-type]
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    # A pair is 56 bytes and the table's own slot for the channel about as much; a dict of
    # one entry alone was 232.
    assert grown / len(channels) < 150
