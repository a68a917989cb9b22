"""The moderators' page: who may see it, how it resists cross-site requests, and the queue."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.conftest import XesServerProcess
from tests.server.moderation import ModeratorClient, start_with_moderators
from tests.server.wsclient import Client
from xes.server.moderate import LOGIN_ATTEMPTS, ModerationServer


async def test_moderate_needs_a_login_that_resists_guessing_and_cross_site_posts(
        start_xes_server: Callable[..., XesServerProcess], tmp_path: Path) -> None:
    server, base = start_with_moderators(start_xes_server, ["--data-dir", str(tmp_path)], "ada")
    anonymous = ModeratorClient(base)
    page = anonymous.request("GET", "/moderate")
    assert page.status == 200 and "Log in" in page.body and "Queue" not in page.body
    assert page.headers["Cache-Control"] == "no-store" and "frame-ancestors 'none'" in page.headers[
        "Content-Security-Policy"]
    # Acting without a session shows the login page, never the queue.
    refused = anonymous.request("POST", "/moderate/action", {"report": "1", "action": "ban"})
    assert refused.status == 403 and "Log in" in refused.body
    # Wrong password and unknown name: one generic answer; then a rate limit, even for the truth.
    wrong = anonymous.login("ada", "not the password at all")
    unknown = anonymous.login("nobody", "not the password at all")
    assert wrong.status == unknown.status == 401
    assert "Wrong name or password." in wrong.body and "Wrong name or password." in unknown.body
    for _ in range(LOGIN_ATTEMPTS - 2):
        anonymous.login("ada", "still wrong, still guessing")
    limited = anonymous.login("ada")
    assert limited.status == 429 and anonymous.cookie is None
    await _assert_not_on_the_signalling_port(server)


async def _assert_not_on_the_signalling_port(server: XesServerProcess) -> None:
    try:
        urllib.request.urlopen(server.http_url + "/moderate", timeout=10)
        raise AssertionError("/moderate answered on the signalling port")
    except urllib.error.HTTPError as error:
        assert error.code == 404
    ws = await Client.connect(server.ws_url)
    await ws.send({"type": "moderate", "report": 1, "action": "ban"})
    assert (await ws.expect("error"))["code"] == "unknown-type"


async def test_session_cookie_csrf_and_the_queue_order(
        start_xes_server: Callable[..., XesServerProcess], storage_args: list[str]) -> None:
    server, base = start_with_moderators(start_xes_server, storage_args, "grace")
    # Two calls, two reports: harassment first, then suspected under 18.
    reported = []
    for reason in ("harassment", "under-18"):
        a, b = await Client.connect(server.ws_url), await Client.connect(server.ws_url)
        await a.match("A", direct=True)
        await a.expect("queued")
        await b.match("B", direct=True)
        await b.expect("queued")
        await b.expect("joined")
        await a.send({"type": "report", "peer": b.peer, "reason": reason, "text": f"<b>{reason}</b>"})
        assert (await a.expect("joined"))["match"] and (await a.expect("peer-joined"))
        assert (await a.expect("noted"))["ref"] == "report"
        reported.append(b)
    grace = ModeratorClient(base)
    login = grace.login("grace")
    assert login.status == 303
    cookie = login.headers["Set-Cookie"]
    assert all(flag in cookie for flag in ("HttpOnly", "SameSite=Strict", "Path=/moderate"))
    assert "Secure" not in cookie  # plain HTTP here; behind TLS it is (below)
    behind_tls = ModerationServer(None, print, secure=True)  # type: ignore[arg-type]
    assert "; Secure" in behind_tls.session_cookie("token", 60)
    queue = grace.request("GET", "/moderate").body
    first, second = queue.index("Report 1:"), queue.index("Report 2:")
    assert queue[first:second].count("Suspected under 18") >= 1 and "Harassment" in queue[second:]
    assert "&lt;b&gt;under-18&lt;/b&gt;" in queue and "<b>under-18</b>" not in queue
    # Cross-site: refused with or without the token; same site without the token: refused.
    token = grace.csrf()
    under_18_report = queue[first:second].split('name="report" value="')[1].split('"')[0]
    act = {"report": under_18_report, "action": "ban", "csrf": token}
    assert grace.request("POST", "/moderate/action", act, origin="https://evil.example").status == 403
    assert grace.request("POST", "/moderate/action", {**act, "csrf": ""}).status == 403
    assert "Suspected under 18" in grace.request("GET", "/moderate").body
    # The real thing: banned, and the banned identity's next match is refused.
    assert grace.request("POST", "/moderate/action", act).status == 303
    banned = reported[1]
    await banned.send({"type": "next"})
    assert (await banned.recv())["code"] == "identity-banned"
    again = await Client.connect(server.ws_url)
    assert (await again.identify(banned.identity))["banned"] is True
    page = grace.request("GET", "/moderate").body
    assert "Suspected under 18</h3>" not in page
    audit = page[page.index("Audit log"):]
    assert "grace" in audit and "ban" in audit and "login" in audit
