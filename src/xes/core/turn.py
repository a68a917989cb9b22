"""ICE server lists with short-lived TURN credentials (the TURN REST API convention).

coturn's ``use-auth-secret`` mode checks credentials without any call back to us: the username is
``<expiry unix time>:<peer id>`` and the password is base64(HMAC-SHA1(shared secret, username))
(draft-uberti-behave-turn-rest-00, section 2.2). coturn refuses it once the expiry has passed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from ..protocol.messages import IceServer

__all__ = ["IceSettings", "turn_credentials", "ice_servers_for"]


@dataclass(frozen=True, slots=True)
class IceSettings:
    """The operator's STUN and TURN servers. ``turn_secret`` is coturn's static-auth-secret."""

    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_secret: bytes | None = None
    ttl_seconds: int = 3600

    def __post_init__(self) -> None:
        if self.turn_urls and not self.turn_secret:
            raise ValueError("TURN URLs need a shared secret (--turn-secret-file or XES_TURN_SECRET)")
        if self.ttl_seconds < 60:
            raise ValueError("TURN credentials must live at least 60 seconds")

    @property
    def has_turn(self) -> bool:
        return bool(self.turn_urls)


def turn_credentials(secret: bytes, peer: str, expires_at: int) -> tuple[str, str]:
    """Return (username, credential) valid until ``expires_at`` (unix seconds)."""
    username = f"{expires_at}:{peer}"
    digest = hmac.new(secret, username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers_for(settings: IceSettings, peer: str, unix_now: float
                    ) -> tuple[list[IceServer], int | None]:
    """The ``iceServers`` list for one peer, and when its TURN credentials expire (None: no TURN).

    ``unix_now`` is wall-clock time (``Now.unix``): coturn checks the expiry against its own wall
    clock, so a monotonic reading here would stamp a meaningless expiry.
    """
    servers: list[IceServer] = []
    if settings.stun_urls:
        servers.append(IceServer(urls=list(settings.stun_urls)))
    if not settings.turn_urls:
        return servers, None
    assert settings.turn_secret is not None  # checked in IceSettings.__post_init__
    expires_at = int(unix_now) + settings.ttl_seconds
    username, credential = turn_credentials(settings.turn_secret, peer, expires_at)
    servers.append(IceServer(urls=list(settings.turn_urls), username=username, credential=credential))
    return servers, expires_at
