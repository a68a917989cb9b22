"""Turn what a user types (a room link, a bare room id, a server URL) into where to connect.

A room link is what the browser shows: ``http://host:port/r/<room id>``. The signalling
WebSocket lives on the same origin at ``/ws`` (docs/protocol.md, "Transport"), so a link alone
is enough to join. A bare room id needs a server: ``--server``, else ``$XES_SERVER``, else
``http://127.0.0.1:8000``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from xes.peer.errors import RoomLinkError

__all__ = [
    "DEFAULT_SERVER",
    "ROOM_ID_PATTERN",
    "RoomTarget",
    "resolve_room",
    "websocket_url",
    "is_loopback_url",
]

DEFAULT_SERVER = "http://127.0.0.1:8000"
"""Where a bare room id goes when neither ``--server`` nor ``$XES_SERVER`` says otherwise."""

ROOM_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{22}")
"""A room id: 22 base64url characters carrying 128 random bits (docs/protocol.md)."""

_SCHEME_TO_WS = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


@dataclass(frozen=True)
class RoomTarget:
    """A room to join and the signalling WebSocket that serves it."""

    room_id: str
    ws_url: str


def websocket_url(server: str) -> str:
    """The signalling WebSocket URL for a server given as a page or WebSocket URL.

    ``http://h:p`` and ``http://h:p/`` become ``ws://h:p/ws``; ``https`` becomes ``wss``;
    a ``ws://`` or ``wss://`` URL with a path is kept as it is.

    Raises:
        RoomLinkError: If `server` is not an http(s) or ws(s) URL with a host.
    """
    parts = urlsplit(server.strip())
    scheme = _SCHEME_TO_WS.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise RoomLinkError(
            f"not a server URL: {server!r} (expected something like http://127.0.0.1:8000)"
        )
    try:
        parts.port  # noqa: B018 - urlsplit validates the port only when it is read
    except ValueError as error:
        raise RoomLinkError(f"bad port in server URL {server!r}: {error}") from None
    path = parts.path
    if parts.scheme.lower() in ("http", "https") or path in ("", "/"):
        path = "/ws"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def resolve_room(target: str, server: str | None = None) -> RoomTarget:
    """Find the room id and the signalling URL for what the user typed.

    Args:
        target: A room link (``http://host:port/r/<id>``) or a bare room id.
        server: An explicit server URL; it wins over the link's own origin. When None and
            `target` is a bare id, ``$XES_SERVER`` or :data:`DEFAULT_SERVER` is used.

    Raises:
        RoomLinkError: If `target` is neither a room link nor a valid room id, or the server
            URL cannot be used.
    """
    text = target.strip()
    if "://" not in text:
        if not ROOM_ID_PATTERN.fullmatch(text):
            raise RoomLinkError(
                f"not a room link or room id: {target!r} (a room id is 22 characters of "
                "A-Z a-z 0-9 _ -; a link looks like http://host:port/r/<room id>)"
            )
        chosen = server or os.environ.get("XES_SERVER") or DEFAULT_SERVER
        return RoomTarget(room_id=text, ws_url=websocket_url(chosen))
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise RoomLinkError(f"not a room link: {target!r} (expected http(s)://host/r/<room id>)")
    segments = [segment for segment in parts.path.split("/") if segment]
    if len(segments) != 2 or segments[0] != "r" or not ROOM_ID_PATTERN.fullmatch(segments[1]):
        raise RoomLinkError(
            f"not a room link: {target!r} (the path must be /r/<room id>, where a room id "
            "is 22 characters of A-Z a-z 0-9 _ -)"
        )
    origin = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    return RoomTarget(room_id=segments[1], ws_url=websocket_url(server or origin))


def is_loopback_url(url: str) -> bool:
    """Whether `url`'s host is a loopback address (127.0.0.0/8, ::1) or ``localhost``."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
