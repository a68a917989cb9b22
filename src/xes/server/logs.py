"""How `xes serve` logs: one line per event, as text or JSON, and never an address or a payload.

XES's own log lines carry counts, codes, exception types and pseudonymous session ids, never a
message's contents (SDP, candidates, chat, names, room ids) nor a client's address; ``--debug`` is
the one exception, and says so. The libraries underneath (picows, asyncio, uvloop, redis-py) are
not ours: picows logs each client's address at INFO, asyncio may quote a peer in a warning. So
outside ``--debug`` every line also passes :class:`AddressFilter`, which blanks anything shaped
like an IPv4 or IPv6 address before it is written.

``--log-format json`` writes one JSON object per line (``ts``, ``level``, ``logger``, ``node``,
``msg``, and ``error`` with the exception's type when there is one) for journald, Loki or any
collector that reads JSON.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import IO, Final

__all__ = ["AddressFilter", "JsonFormatter", "configure_logging", "log_handler", "scrub"]

# Dotted quads, and IPv6 with a "::" or at least four colons (a time of day has two).
_IPV4: Final = r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])"
_IPV6: Final = (r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%\w+)?(?![\w:])")
_ADDRESS: Final = re.compile(f"{_IPV4}|{_IPV6}")
_REDACTED: Final = "[address]"


def scrub(text: str) -> str:
    """``text`` with every IP-address-shaped token replaced by ``[address]``."""
    return _ADDRESS.sub(_looks_like_address, text)


def _looks_like_address(found: re.Match[str]) -> str:
    token = found.group(0)
    if ":" in token and "::" not in token and token.count(":") < 4:
        return token  # 12:34:56 and the like
    return _REDACTED


class AddressFilter(logging.Filter):
    """Blanks addresses in a record's message and in its exception text (see module doc)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            # The traceback's last line quotes the exception's text: format it now, scrubbed.
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; the exception's type always, its traceback only with --debug."""

    def __init__(self, node: str, tracebacks: bool) -> None:
        super().__init__()
        self.node = node
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "node": self.node,
            "msg": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
            if self.tracebacks:
                entry["traceback"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def log_handler(log_format: str, debug: bool, node: str,
                stream: IO[str] | None = None) -> logging.Handler:
    """The handler `xes serve` logs through (to ``stream``, stderr by default)."""
    handler = logging.StreamHandler(stream)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(node, tracebacks=debug))
    else:
        handler.setFormatter(logging.Formatter(
            f"%(asctime)s %(levelname)s {node} %(name)s: %(message)s"))
    if not debug:
        handler.addFilter(AddressFilter())
    return handler


def configure_logging(log_format: str, debug: bool, node: str) -> None:
    """Set up the root logger for `xes serve` (stderr, INFO; DEBUG with --debug)."""
    handler = log_handler(log_format, debug, node)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # picows logs peer addresses on every connection at INFO: quiet unless the operator debugs.
    logging.getLogger("picows").setLevel(logging.DEBUG if debug else logging.WARNING)
