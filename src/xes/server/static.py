"""The browser client's files, read once at start-up and answered from memory.

The client is a handful of small ES modules, so holding them in memory costs a few hundred KB and
keeps file-system reads off every request.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = ["StaticFile", "load_web_client", "SECURITY_HEADERS"]

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".png": "image/png",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
}

# The page may talk only to its own origin; no inline script, so an injected name cannot run code.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "media-src 'self' blob: mediastream:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    # Room links are secrets of a kind: never leak them to other sites in a Referer.
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "microphone=(self), camera=(), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def load_web_client(directory: Path | None = None) -> dict[str, StaticFile]:
    """Map file names (``main.js``) to their contents, from the installed package by default."""
    root = Path(str(resources.files("xes") / "web")) if directory is None else directory
    files: dict[str, StaticFile] = {}
    for path in sorted(root.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        body = path.read_bytes()
        content_type = _TYPES.get(path.suffix, "application/octet-stream")
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        files[path.name] = StaticFile(body, content_type, etag)
    return files
