"""Sockets that resume and then never read: the peer that the "Nothing held" guarantee
(docs/protocol.md) is about.

A process of its own (the benchmark's load is not this process's to share) opens `count`
WebSocket connections at once, each with a receive buffer of a few kB, reads the handshake's
answer byte by byte, and from then on reads nothing: the edge's replay fills the kernel's
buffers and then has to wait, or hold, or give up. Only the first frame is looked at, with
MSG_PEEK, which takes nothing from the buffer (the edge's pings ahead of it are taken off, a
few bytes each, and never answered): a close frame first is a connect refused (1013,
overloaded, is the one that matters here). When told to, every socket is reset
(SO_LINGER 0: no close frame, no FIN), as a browser tab that vanished would leave it.
"""

from __future__ import annotations

import base64
import os
import select
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

RECEIVE_BUFFER = 4096  # the kernel rounds it up; small, so that the edge's sends back up at once
HANDSHAKE_TIMEOUT = 30.0


def _open(port: int, path: str) -> tuple[socket.socket, float]:
    """A connected, upgraded socket, with nothing read past the handshake's answer; and
    when the upgrade was answered (monotonic)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    sock.settimeout(HANDSHAKE_TIMEOUT)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            raise ConnectionError(f"closed during the handshake: {head!r}")
        head += byte
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(f"upgrade refused: {head[:80]!r}")
    return sock, time.monotonic()


def _first_frame(sock: socket.socket) -> int | None:
    """What the edge sent first after the handshake: 0 for a data frame, the code of a
    close frame, None while nothing but pings is there. Pings ahead of it are taken off
    the buffer (a few bytes each) and never answered, as a frozen tab would not."""
    while True:
        head = sock.recv(4, socket.MSG_PEEK)
        if len(head) < 2:
            return None
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        if opcode == 8:
            if length < 2:
                return 1005  # a close frame without a code
            return struct.unpack("!H", head[2:4])[0] if len(head) >= 4 else None
        if opcode not in (9, 10):
            return 0
        if len(sock.recv(2 + length, socket.MSG_PEEK)) < 2 + length:
            return None
        sock.recv(2 + length)


def hold(port: int, path: str, count: int, pipe: Connection) -> None:
    """The process: open `count` sockets at once, say so, watch for each one's first frame
    until the pipe says "close", reset them all, and answer what was seen."""
    started = time.monotonic()
    with ThreadPoolExecutor(count) as pool:
        opened = list(pool.map(lambda _: _open(port, path), range(count)))
    open_s = time.monotonic() - started
    pipe.send("open")
    waiting = {sock: upgraded for sock, upgraded in opened}
    codes: list[int] = []  # each first frame's close code (0: a data frame)
    delays: list[float] = []  # and how long after the upgrade it came
    while not pipe.poll(0):
        readable = select.select(list(waiting), [], [], 0.02)[0] if waiting else []
        if not waiting:
            time.sleep(0.02)
        for sock in readable:
            code = _first_frame(sock)
            if code is not None:
                codes.append(code)
                delays.append(time.monotonic() - waiting.pop(sock))
    pipe.recv()
    for sock, _ in opened:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    answer: dict[str, Any] = {
        "opened": count,
        "open_s": open_s,
        "first_codes": codes,  # per socket with a first frame: 0 (data) or a close code
        "first_frame_s": delays,
        "no_frame": len(waiting),
    }
    pipe.send(answer)
