"""The moderators' page, /moderate, on its own port (docs/moderation.md).

picows answers only GETs without a body, and moderators must POST (log in, act), so this is a
small HTTP/1.1 server of its own: one request per connection, bounded head and body, a deadline
for each. Keeping it on its own port also lets operators keep it off the public internet.

Security: accounts come only from `xes moderator add` (scrypt hashes); a session is a random
token in a cookie that is HttpOnly, SameSite=Strict, Path=/moderate and Secure behind TLS; every
POST of a logged-in moderator carries the session's CSRF token, and any POST from another origin
is refused; failed logins are limited per name and per client; pages are never cached or framed.
Every action is in the audit log, with who, when and what.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Final
from urllib.parse import parse_qs, urlsplit

from ..core.access import hash_password
from ..core.safety import ModeratorAction, ReportReason, Standing
from .storage import Storage

__all__ = ["ModerationServer", "COOKIE", "SESSION_SECONDS", "LOGIN_ATTEMPTS", "LOGIN_WINDOW_SECONDS"]

log = logging.getLogger("xes.moderate")

COOKIE: Final = "xes_moderator"
SESSION_SECONDS: Final = 8 * 3600.0
LOGIN_ATTEMPTS: Final = 5            # failures allowed per name and per client ...
LOGIN_WINDOW_SECONDS: Final = 900.0  # ... within this window
_MAX_HEAD: Final = 16_384
_MAX_BODY: Final = 16_384
_DEADLINE: Final = 10.0
_REASONS: Final = {
    ReportReason.UNDER_18: "Suspected under 18", ReportReason.HARASSMENT: "Harassment",
    ReportReason.HATE: "Hate", ReportReason.SEXUAL_CONTENT: "Sexual content",
    ReportReason.OTHER: "Other",
}
_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
    # Not no-referrer: with it a browser sends `Origin: null` even on this page's own forms.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
# Hashed when the name is unknown, so a wrong name takes as long as a wrong password.
_DUMMY_SALT: Final = b"\0" * 16


@dataclass(slots=True)
class _Session:
    moderator: str
    csrf: str
    expires: float


@dataclass(slots=True)
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client: str

    def cookie(self, name: str) -> str | None:
        for part in self.headers.get("cookie", "").split(";"):
            key, _, value = part.strip().partition("=")
            if key == name:
                return value
        return None

    def form(self) -> dict[str, str]:
        fields = parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
        return {key: values[0] for key, values in fields.items()}


class ModerationServer:
    """Serves /moderate; ``on_standing`` tells the signalling core what a decision changed."""

    def __init__(self, storage: Storage, on_standing: Callable[[Standing], None], *, secure: bool) -> None:
        self.storage = storage
        self.on_standing = on_standing
        self.secure = secure
        self.sessions: dict[str, _Session] = {}
        # Recent failed logins (monotonic times), per name and per client address; in memory only.
        self.failures: dict[str, list[float]] = {}
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._connection, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # ------------------------------------------------------------------ HTTP

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_DEADLINE):
                request = await self._read(reader, writer)
                if request is None:
                    response = _page(HTTPStatus.BAD_REQUEST, "Bad request", "<p>Bad request.</p>")
                else:
                    response = await self._respond(request)
                writer.write(response)
                await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception as exc:  # one request's trouble: a bare 500, the server goes on
            log.error("unexpected %s on the moderators' page", type(exc).__name__)
            writer.write(_page(HTTPStatus.INTERNAL_SERVER_ERROR, "Error", "<p>Internal error.</p>"))
        finally:
            writer.close()

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            return None
        if len(head) > _MAX_HEAD:
            return None
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, sep, value = line.partition(":")
                if not sep:
                    return None
                headers[name.strip().lower()] = value.strip()
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            return None
        if not 0 <= length <= _MAX_BODY or "transfer-encoding" in headers:
            return None
        body = await reader.readexactly(length) if length else b""
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        return _Request(parts[0], urlsplit(parts[1]).path, headers, body, client)

    async def _respond(self, request: _Request) -> bytes:
        session = self._session(request)
        if request.method == "GET" and request.path == "/moderate":
            if session is None:
                return _login_page()
            return await self._queue_page(session)
        if request.method != "POST":
            return _page(HTTPStatus.NOT_FOUND, "Not found", "<p>Not found.</p>")
        if not self._same_origin(request):
            return _page(HTTPStatus.FORBIDDEN, "Refused", "<p>Cross-site request refused.</p>")
        if request.path == "/moderate/login":
            return await self._login(request)
        if session is None:
            return _login_page(status=HTTPStatus.FORBIDDEN)
        form = request.form()
        if not hmac.compare_digest(form.get("csrf", ""), session.csrf):
            return _page(HTTPStatus.FORBIDDEN, "Refused", "<p>Missing or wrong CSRF token.</p>")
        if request.path == "/moderate/logout":
            self.sessions.pop(request.cookie(COOKIE) or "", None)
            return _redirect("/moderate", self.session_cookie("", 0))
        if request.path == "/moderate/action":
            return await self._act(session, form)
        return _page(HTTPStatus.NOT_FOUND, "Not found", "<p>Not found.</p>")

    def _same_origin(self, request: _Request) -> bool:
        """Browsers send Origin with every POST; it must be this page's own."""
        origin = request.headers.get("origin")
        if origin is None:
            return True  # not a browser: CSRF needs a victim's browser
        return urlsplit(origin).netloc == request.headers.get("host")

    def _session(self, request: _Request) -> _Session | None:
        token = request.cookie(COOKIE)
        session = self.sessions.get(token) if token else None
        if session is None or session.expires < time.monotonic():
            return None
        return session

    def session_cookie(self, token: str, max_age: int) -> str:
        secure = "; Secure" if self.secure else ""
        return f"{COOKIE}={token}; Path=/moderate; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"

    # ------------------------------------------------------------------ login

    def _limited(self, key: str, now: float) -> bool:
        recent = [t for t in self.failures.get(key, []) if now - t < LOGIN_WINDOW_SECONDS]
        if recent:
            self.failures[key] = recent
        else:
            self.failures.pop(key, None)
        return len(recent) >= LOGIN_ATTEMPTS

    async def _login(self, request: _Request) -> bytes:
        form = request.form()
        name, password = form.get("name", "")[:64], form.get("password", "")[:256]
        now = time.monotonic()
        keys = (f"name:{name}", f"client:{request.client}")
        if any(self._limited(key, now) for key in keys):
            return _login_page("Too many failed attempts. Wait 15 minutes and try again.",
                               HTTPStatus.TOO_MANY_REQUESTS)
        stored = await self.storage.run(self.storage.database.moderator, name)
        salt, digest = stored if stored is not None else (_DUMMY_SALT, b"")
        hashed = await asyncio.to_thread(hash_password, password, salt)
        if stored is None or not hmac.compare_digest(hashed.digest, digest):
            for key in keys:
                self.failures.setdefault(key, []).append(now)
            return _login_page("Wrong name or password.", HTTPStatus.UNAUTHORIZED)
        for key in keys:
            self.failures.pop(key, None)
        token = secrets.token_urlsafe(32)
        self.sessions[token] = _Session(name, secrets.token_urlsafe(32), now + SESSION_SECONDS)
        await self.storage.run(self.storage.database.audit, time.time(), name, "login", None, None, "")
        return _redirect("/moderate", self.session_cookie(token, int(SESSION_SECONDS)))

    # ------------------------------------------------------------------ the queue

    async def _act(self, session: _Session, form: dict[str, str]) -> bytes:
        try:
            report_id = int(form.get("report", ""))
            action = ModeratorAction(form.get("action", ""))
        except ValueError:
            return _page(HTTPStatus.BAD_REQUEST, "Bad request", "<p>Unknown report or action.</p>")
        warning = form.get("warning", "").strip()[:500] or "A moderator asks you to follow the rules."
        after = await self.storage.run(self.storage.database.resolve, report_id, action,
                                       session.moderator, time.time(), warning)
        if after is not None:
            self.on_standing(after)
        return _redirect("/moderate")

    async def _queue_page(self, session: _Session) -> bytes:
        db = self.storage.database
        reports = await self.storage.run(db.open_reports)
        audit = await self.storage.run(db.audit_log, 50)
        csrf = html.escape(session.csrf)
        items = []
        for n, r in enumerate(reports, start=1):
            reason = _REASONS[r.reason]
            urgent = ' style="border:2px solid #b00"' if r.reason is ReportReason.UNDER_18 else ""
            items.append(
                f'<article aria-label="Report {n}: {reason}"{urgent}><h3>{reason}</h3><dl>'
                f"<dt>Reported</dt><dd>{_when(r.created_at)}</dd>"
                f"<dt>Call length</dt><dd>{round(r.call_seconds)} s</dd>"
                f"<dt>Identity reported</dt><dd><code>{r.target[:16]}</code>"
                f" ({r.reports_against_target} open report(s))</dd>"
                f"<dt>Reporter</dt><dd><code>{r.reporter[:16]}</code></dd>"
                f"<dt>What the reporter wrote</dt><dd>{html.escape(r.text) or '<em>nothing</em>'}</dd></dl>"
                f'<form method="post" action="/moderate/action">'
                f'<input type="hidden" name="csrf" value="{csrf}">'
                f'<input type="hidden" name="report" value="{r.id}">'
                f'<label>Warning text <input name="warning" maxlength="500"></label> '
                + "".join(f'<button name="action" value="{a.value}">{a.value.capitalize()}</button> '
                          for a in ModeratorAction)
                + "</form></article>")
        rows = "".join(
            f"<tr><td>{_when(a.at)}</td><td>{html.escape(a.moderator)}</td><td>{html.escape(a.action)}</td>"
            f"<td><code>{(a.target or '')[:16]}</code></td><td>{a.report_id or ''}</td>"
            f"<td>{html.escape(a.detail)}</td></tr>" for a in audit)
        body = (
            f"<p>Logged in as {html.escape(session.moderator)}.</p>"
            f'<form method="post" action="/moderate/logout"><input type="hidden" name="csrf" '
            f'value="{csrf}"><button>Log out</button></form>'
            f'<section aria-label="Queue"><h2>Queue ({len(reports)} open)</h2>'
            + ("".join(items) or "<p>No open reports.</p>") + "</section>"
            '<section aria-label="Audit log"><h2>Audit log</h2><table><thead><tr><th>When</th>'
            "<th>Who</th><th>What</th><th>Identity</th><th>Report</th><th>Detail</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></section>")
        return _page(HTTPStatus.OK, "XES moderators", body)


def _when(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _login_page(error: str = "", status: HTTPStatus = HTTPStatus.OK) -> bytes:
    alert = f'<p role="alert">{html.escape(error)}</p>' if error else ""
    return _page(status, "XES moderators: log in", alert + (
        '<form method="post" action="/moderate/login">'
        '<label>Name <input name="name" autocomplete="username" required></label> '
        '<label>Password <input name="password" type="password" autocomplete="current-password" '
        "required></label> <button>Log in</button></form>"))


def _page(status: HTTPStatus, title: str, body: str) -> bytes:
    document = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
                f"</title></head><body><h1>{html.escape(title)}</h1>{body}</body></html>").encode()
    return _response(status, document, {"Content-Type": "text/html; charset=utf-8"})


def _redirect(location: str, cookie: str | None = None) -> bytes:
    headers = {"Location": location}
    if cookie is not None:
        headers["Set-Cookie"] = cookie
    return _response(HTTPStatus.SEE_OTHER, b"", headers)


def _response(status: HTTPStatus, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status.value} {status.phrase}"]
    for name, value in {**_HEADERS, **headers, "Content-Length": str(len(body)),
                        "Connection": "close"}.items():
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
