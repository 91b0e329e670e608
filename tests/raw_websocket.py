"""A WebSocket client below any library: frames written by hand and a peer that never reads, for the tests
that hit the server's bounds (send timeouts, queues, pong floods) where a real client would read politely."""

from __future__ import annotations

import asyncio
import socket
import struct

TEXT, PING = 0x1, 0x9


def masked(payload: bytes, opcode: int = TEXT) -> bytes:
    """One final masked frame as a client sends it (a zero mask leaves the payload as it is)."""
    first, n = 0x80 | opcode, len(payload)
    if n < 126:
        head = struct.pack("!BB", first, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


async def never_reading_client(port: int, path: str) -> socket.socket:
    """A raw socket past the WebSocket handshake, with a small receive buffer, that is never read again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(
        sock,
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode(),
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock
