"""Let aiortc offer a 127.0.0.1 host candidate, only where the caller asks for it.

aioice (aiortc's ICE agent) leaves 127.0.0.1 out when it lists host addresses
(``aioice.ice.get_host_addresses``), which is right on the internet and wrong for two peers on
one machine with only loopback between them, such as tests, a bot next to the server, or a
machine without a network. There is no option for it in aiortc 1.16, so this module wraps that
one function: the wrapper adds 127.0.0.1 only inside :func:`loopback_gathering`, a context
manager built on a :class:`contextvars.ContextVar`. Gathering runs in tasks spawned from the
awaiting coroutine, which copy the current context, so a peer that asked for loopback gets it
and every other RTCPeerConnection in the process gathers exactly as aiortc would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import aioice.ice

__all__ = ["LOOPBACK_ADDRESS", "loopback_gathering"]

LOOPBACK_ADDRESS = "127.0.0.1"

_loopback_wanted: ContextVar[bool] = ContextVar("xes_loopback_wanted", default=False)
_WRAPPED_MARK = "_xes_loopback_wrapper"


def _install_wrapper() -> None:
    """Wrap aioice's address lister once per process (idempotent)."""
    current = aioice.ice.get_host_addresses
    if getattr(current, _WRAPPED_MARK, False):
        return
    original: Callable[[bool, bool], list[str]] = current

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        addresses = list(original(use_ipv4, use_ipv6))
        if _loopback_wanted.get() and use_ipv4 and LOOPBACK_ADDRESS not in addresses:
            addresses.insert(0, LOOPBACK_ADDRESS)
        return addresses

    setattr(get_host_addresses, _WRAPPED_MARK, True)
    aioice.ice.get_host_addresses = get_host_addresses


@contextmanager
def loopback_gathering(enabled: bool) -> Iterator[None]:
    """Within this block (and tasks it starts), aiortc also gathers a 127.0.0.1 host candidate.

    Wrap ``RTCPeerConnection.setLocalDescription`` in it: that is where aiortc gathers.
    With ``enabled=False`` the block changes nothing.
    """
    if not enabled:
        yield
        return
    _install_wrapper()
    token = _loopback_wanted.set(True)
    try:
        yield
    finally:
        _loopback_wanted.reset(token)
