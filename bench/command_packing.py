"""What packing an edge's presence heartbeat costs: redis-py's asyncio packer (Python)
against hiredis's (`realtime.broker.command_packing`), in one process and one run, over the
same commands: the scripts `presence_calls.put` makes for U users on one Redis.

    .venv/bin/python -m bench.command_packing --users 1000
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from redis.asyncio.connection import Connection

from realtime.broker.command_packing import packed_by_hiredis
from realtime.broker.presence_calls import Entry, Stamp, put


def _timed(pack: Callable[[], object], rounds: int) -> float:
    """The median over `rounds` of one call's CPU time, in ms."""
    times = []
    for _ in range(rounds):
        started = time.process_time()
        pack()
        times.append((time.process_time() - started) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    entries = {Entry(f"user-{n}"): 1 for n in range(args.users)}
    calls = put(entries, Stamp("edge-0123456789", 1, 30_000), cluster=False)
    commands = [("EVALSHA", "0" * 40, len(c.keys), *c.keys, *c.args) for c in calls]
    python, hiredis = Connection(), packed_by_hiredis(Connection)()
    assert b"".join(python.pack_commands(commands)) == b"".join(hiredis.pack_commands(commands))
    row = {
        "users": args.users,
        "commands": len(commands),
        "arguments": sum(len(c) for c in commands),
        "python_ms_per_beat": round(_timed(lambda: python.pack_commands(commands), args.rounds), 3),
        "hiredis_ms_per_beat": round(
            _timed(lambda: hiredis.pack_commands(commands), args.rounds), 3
        ),
    }
    row["ratio"] = round(row["hiredis_ms_per_beat"] / row["python_ms_per_beat"], 3)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
