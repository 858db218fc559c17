"""A WebSocket peer that stops reading, and what an edge still holds of such peers.

The worst client an edge meets: it completes the handshake on a socket with the smallest
receive buffer the kernel allows and then never reads again, so that once a few events have
filled both kernel buffers the edge's transport can write nothing, not even a close frame.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket

from tests.harness import WAIT, Edge


class StalledPeer:
    """A client that completes the handshake (or an SSE stream's response head) and then never
    reads again."""

    def __init__(
        self, port: int, token: str, *, since: str | None = None, sse_ticket: str | None = None
    ) -> None:
        """A WebSocket peer; or, given `sse_ticket`, an SSE reader of that ticket's stream."""
        self.sock = socket.socket()
        # Before connecting, so that the window it advertises stays small (the kernel
        # rounds it up to its minimum).
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        self.sock.settimeout(WAIT)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        if sse_ticket is not None:
            request = f"GET /api/v1/insight/sse?ticket={sse_ticket} HTTP/1.1\r\n"
            upgrade, expected = "", b"HTTP/1.1 200"
        else:
            request = f"GET /api/v1/insight?token={token}{f'&since={since}' if since else ''} "
            request += "HTTP/1.1\r\n"
            upgrade = (
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            )
            expected = b"HTTP/1.1 101"
        self.sock.sendall(f"{request}Host: 127.0.0.1\r\n{upgrade}\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:  # one byte at a time: read nothing past the head
            head += self.sock.recv(1)
        assert head.startswith(expected), head

    def close(self) -> None:
        self.sock.close()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])


def sockets_held(edge: Edge, peers: list[StalledPeer]) -> int:
    """How many of the peers' TCP connections the edge process still holds a descriptor of
    (Linux: its descriptors' socket inodes, looked up in its /proc/net/tcp)."""
    assert edge.process is not None
    proc = f"/proc/{edge.process.pid}"
    inodes = set()
    for fd in os.listdir(f"{proc}/fd"):
        with contextlib.suppress(FileNotFoundError):
            inodes.add(os.readlink(f"{proc}/fd/{fd}"))
    ports = {peer.port for peer in peers}
    held = 0
    with open(f"{proc}/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rpartition(":")[2], 16)
            held += remote_port in ports and f"socket:[{fields[9]}]" in inodes
    return held


def rss_bytes(edge: Edge) -> int:
    """The edge process's resident memory (Linux: VmRSS)."""
    assert edge.process is not None
    with open(f"/proc/{edge.process.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")
