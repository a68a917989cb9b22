"""Helpers for the moderators' page: a server with /moderate, accounts, and a tiny HTTP client."""

from __future__ import annotations

import http.client
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from tests.conftest import XesServerProcess, xes_command

PASSWORD = "correct horse battery staple"


def add_moderator(name: str, storage_args: list[str], password: str = PASSWORD) -> None:
    """`xes moderator add NAME` as an operator runs it (the password on standard input)."""
    done = subprocess.run([*xes_command(), "moderator", "add", name, "--password-stdin", *storage_args],
                          input=password + "\n", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def start_with_moderators(start: Callable[..., XesServerProcess], storage_args: list[str],
                          *names: str) -> tuple[XesServerProcess, str]:
    """A server with /moderate on a free port, and these moderators; (server, moderators' URL)."""
    for name in names:
        add_moderator(name, storage_args)
    server = start(args=[*storage_args, "--moderate-port", "0"])
    found = re.search(r"Moderators: (http://\S+)/moderate", server.log)
    assert found, server.log
    return server, found.group(1)


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: str


@dataclass
class ModeratorClient:
    """A browser-like client of /moderate: keeps the session cookie, sends its own Origin."""

    base: str
    cookie: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, form: dict[str, str] | None = None,
                origin: str | None = "same") -> Response:
        parts = urlsplit(self.base)
        connection = http.client.HTTPConnection(parts.netloc, timeout=30)
        headers = dict(self.extra_headers)
        if self.cookie:
            headers["Cookie"] = self.cookie
        if origin is not None:
            headers["Origin"] = self.base if origin == "same" else origin
        body = urlencode(form or {}) if method == "POST" else None
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        connection.request(method, path, body=body, headers=headers)
        reply = connection.getresponse()
        response = Response(reply.status, reply.headers, reply.read().decode())
        connection.close()
        set_cookie = reply.headers.get("Set-Cookie")
        if set_cookie:
            self.cookie = set_cookie.split(";", 1)[0]
        return response

    def login(self, name: str, password: str = PASSWORD) -> Response:
        return self.request("POST", "/moderate/login", {"name": name, "password": password})

    def csrf(self) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.request("GET", "/moderate").body)
        assert found, "no CSRF token on the queue page"
        return found.group(1)
