"""A WebSocket client on a bare socket, for what a library client will not do: never read, or
send bytes that are not UTF-8 in a text frame."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from urllib.parse import urlsplit

TEXT = 0x1
CLOSE = 0x8


def frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame (RFC 6455 §5.2)."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


class RawWebSocket:
    """A blocking socket that has done the opening handshake, and nothing else."""

    def __init__(self, url: str, receive_buffer: int | None = None) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # before connect, so the window we advertise stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(10)
        self.sock.connect((parts.hostname, parts.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            .encode())
        response = b""
        while b"\r\n\r\n" not in response:  # byte by byte: whatever follows stays unread
            chunk = self.sock.recv(1)
            assert chunk, "the server closed during the handshake"
            response += chunk
        assert response.startswith(b"HTTP/1.1 101"), response

    def read_message(self) -> dict[str, object]:
        """Read one whole unfragmented text frame from the server (unmasked) as JSON."""
        def exactly(size: int) -> bytes:
            data = b""
            while len(data) < size:
                chunk = self.sock.recv(size - len(data))
                assert chunk, "the server closed the connection"
                data += chunk
            return data

        first, second = exactly(2)
        assert first & 0x0F == TEXT and first & 0x80, f"not a final text frame: {first:#x}"
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", exactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", exactly(8))[0]
        message: dict[str, object] = json.loads(exactly(size))
        return message

    def send_text(self, payload: bytes) -> None:
        self.sock.sendall(frame(TEXT, payload))

    def send_close(self, code: int = 1000) -> None:
        self.sock.sendall(frame(CLOSE, struct.pack("!H", code)))

    def drain_until_closed(self, limit: int = 64 << 20) -> tuple[int, str]:
        """Read everything the server sent until it ends the connection: (bytes, how it ended)."""
        total = 0
        while total < limit:
            try:
                chunk = self.sock.recv(1 << 16)
            except ConnectionResetError:
                return total, "reset"
            except TimeoutError:
                return total, "still open"
            if not chunk:
                return total, "closed"
            total += len(chunk)
        return total, "still sending"

    def close(self) -> None:
        self.sock.close()
