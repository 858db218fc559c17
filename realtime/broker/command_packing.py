"""Commands to one Redis packed by hiredis, in C, for the asyncio clients.

redis-py's synchronous client packs commands with hiredis when it is installed; its asyncio
client always packs in Python, and that packer copies its growing buffer once per argument.
An edge's presence heartbeat on one Redis is a few scripts of about 1,500 arguments each
(`presence_calls.put`): packing a beat held the edge's event loop 4.3 ms for 1,000 users and
92 ms for 20,000, every PRESENCE_TTL_SECONDS / 3, a stall every socket's frames wait out;
hiredis packs the same bytes in 0.6 and 16 ms (`bench.command_packing` measures both).
A cluster's calls are one per hash slot, small, so its client keeps redis-py's packer.
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio.connection import AbstractConnection, Connection, parse_url


class _PackedByHiredis(AbstractConnection):
    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if isinstance(first, str):  # "CLIENT SETNAME" is two words on the wire, as redis-py
            parts = (*first.encode().split(), *args[1:])
        elif b" " in first:
            parts = (*first.split(), *args[1:])
        else:
            parts = args
        try:
            return [hiredis.pack_command(parts)]
        except TypeError:  # not str, bytes, int or float: redis-py's own refusal (DataError)
            return super().pack_command(*args)


_packed: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def packed_by_hiredis(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    """`connection_class` with its commands packed by hiredis (one class for each)."""
    packed = _packed.get(connection_class)
    if packed is None:
        name = f"HiredisPacked{connection_class.__name__}"
        packed = _packed[connection_class] = type(name, (_PackedByHiredis, connection_class), {})
    return packed


def with_hiredis_packing(url: str, options: dict[str, Any]) -> dict[str, Any]:
    """`options` for redis-py's asyncio `from_url(url, ...)` whose connections, of the class
    the URL's scheme chooses (TCP, TLS, a Unix socket), pack commands with hiredis."""
    chosen: type[AbstractConnection] = options.get("connection_class") or parse_url(url).get(
        "connection_class", Connection
    )
    return {**options, "connection_class": packed_by_hiredis(chosen)}
