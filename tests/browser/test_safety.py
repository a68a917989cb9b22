"""After a call with a stranger, in real Chromium: Report reaches the moderators' queue, suspected
under 18 first; a moderator's Ban refuses that browser's next match, a Cooldown shows its time
left; the audit log shows both. One Chromium: each person a context of their own (own IndexedDB,
so their own identity), the moderator a third."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_call import CONNECT_TIMEOUT_MS
from tests.browser.test_match import ask_for_someone
from tests.conftest import XesServerProcess
from tests.server.moderation import PASSWORD, start_with_moderators

# Three people and a moderator in one Chromium: on a loaded 2-core machine it takes minutes.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def _feedback(page: Page) -> Any:
    return page.get_by_role("region", name=re.compile("Your call with"))


def test_report_suspected_under_18_then_a_moderator_bans_and_cools_down(
        start_xes_server: Callable[..., XesServerProcess], launch_tone_browser: Any,
        tmp_path: Path) -> None:
    server, moderate_url = start_with_moderators(start_xes_server, ["--data-dir", str(tmp_path)], "grace")
    browser = launch_tone_browser(440.0)
    ada, bob, grace = (browser.new_context().new_page() for _ in range(3))
    ask_for_someone(ada, server, "Ada", allow_direct=True)
    expect(ada.get_by_text("Looking for someone to talk to")).to_be_visible(timeout=CONNECT_TIMEOUT_MS)
    ask_for_someone(bob, server, "Bob", allow_direct=True)
    for page, other in ((ada, "Bob"), (bob, "Ada")):
        expect(page.get_by_role("list", name="Participants")).to_contain_text(
            other, timeout=CONNECT_TIMEOUT_MS)
        expect(_feedback(page)).to_contain_text(other)

    # Bob: harassment, with a few words; Ada: suspected under 18, and a bad rating.
    bob_feedback = _feedback(bob)
    bob_feedback.get_by_role("button", name="Report").click()
    bob_feedback.get_by_label("What happened").fill("Kept insulting me")
    bob_feedback.get_by_role("button", name="Harassment").click()
    expect(bob_feedback).to_contain_text("the moderators will look at your report")
    ada_feedback = _feedback(ada)
    ada_feedback.get_by_role("button", name="Report").click()
    ada_feedback.get_by_role("button", name="Suspected under 18").click()
    expect(ada_feedback).to_contain_text("the moderators will look at your report")
    expect(ada_feedback.get_by_role("button", name="Report")).to_be_disabled()
    ada_feedback.get_by_role("button", name="Bad call").click()
    expect(ada_feedback).to_contain_text("your rating was recorded")
    expect(ada_feedback.get_by_role("button", name="Good call")).to_be_disabled()

    # The moderator logs in: the suspected-under-18 report is first although it came second.
    grace.goto(moderate_url + "/moderate")
    grace.get_by_label("Name").fill("grace")
    grace.get_by_label("Password").fill(PASSWORD)
    grace.get_by_role("button", name="Log in").click()
    queue = grace.get_by_role("region", name="Queue")
    reports = queue.get_by_role("article")
    expect(reports).to_have_count(2)
    expect(reports.first).to_have_accessible_name(re.compile("Suspected under 18"))
    expect(reports.nth(1)).to_contain_text("Kept insulting me")
    reports.first.get_by_role("button", name="Ban").click()
    expect(reports).to_have_count(1)
    reports.first.get_by_role("button", name="Cooldown").click()
    expect(queue).to_contain_text("No open reports")
    audit = grace.get_by_role("region", name="Audit log")
    expect(audit.get_by_role("row").filter(has_text="ban")).to_have_count(1)
    expect(audit.get_by_role("row").filter(has_text="cooldown")).to_have_count(1)
    expect(audit).to_contain_text("grace")

    # Bob (banned): his next match is refused. Ada (cooling down): the page shows the time left.
    bob.get_by_role("button", name="Next").click()
    expect(bob.get_by_role("alert")).to_contain_text("banned you from talking to strangers")
    expect(bob.get_by_role("button", name="Talk to someone")).to_be_enabled()
    ada.get_by_role("button", name="Stop").click()
    ada.get_by_role("button", name="Talk to someone").click()
    expect(ada.get_by_role("alert")).to_contain_text(re.compile(r"Time left: (23 h 5\d|24 h 0) min"))
