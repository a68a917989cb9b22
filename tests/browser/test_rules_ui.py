"""Room rules in the page, in real Chromium against a real `xes serve`: the host's controls
(lock, password, lobby, remove, ban, maximum size), what everyone else sees of them, the host
role passing on, and the relay-by-default choice for calls with strangers.

Audio is not the point here, so the people in a room are contexts of one Chromium with the
default fake microphone; each context has its own IndexedDB, hence its own identity.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.browser.test_call import CONNECT_TIMEOUT_MS
from tests.browser.test_match import ask_for_someone
from tests.conftest import XesServerProcess
from tests.support.browser import wait_for_selected_pairs
from tests.turn.coturn import Coturn

pytestmark = pytest.mark.browser

ALLOW_DIRECT = "Allow a direct connection with strangers"


@pytest.fixture
def browser(launch_browser: Callable[..., Browser]) -> Browser:
    """One Chromium for every person in the test."""
    return launch_browser()


@pytest.fixture
def room_url(xes_server: XesServerProcess) -> str:
    """A fresh room link (22 base64url characters)."""
    return f"{xes_server.http_url}/r/{secrets.token_urlsafe(16)}"


@pytest.fixture
def person(browser: Browser) -> Iterator[Callable[[], Page]]:
    """Factory: a new person, i.e. a fresh context (own IndexedDB, so its own identity) and
    its page. At the end no page may have thrown or logged an error (a CSP refusal included)."""
    errors: list[str] = []

    def new_person() -> Page:
        page = browser.new_context().new_page()
        page.set_default_timeout(CONNECT_TIMEOUT_MS)
        page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
        page.on("console", lambda message: errors.append(f"{page.url}: {message.text}")
                if message.type == "error" else None)
        return page

    yield new_person


def join_form(page: Page) -> Locator:
    return page.get_by_role("form", name="Join this room")


def settings(page: Page) -> Locator:
    return page.get_by_role("region", name="Room settings")


def participants(page: Page) -> Locator:
    return page.get_by_role("list", name="Participants")


def rules(page: Page) -> Locator:
    return page.get_by_role("list", name="Room rules")


def press_join(page: Page, room_url: str, name: str, password: str | None = None) -> None:
    """Open the room (unless already there), fill the form, press Join; no waiting."""
    if page.url != room_url:
        page.goto(room_url)
    form = join_form(page)
    form.get_by_label("Display name").fill(name)
    if password is not None:
        form.get_by_label("Room password").fill(password)
    form.get_by_role("button", name="Join").click()


def join(page: Page, room_url: str, name: str, password: str | None = None) -> None:
    """Press Join and wait until this page lists itself in the call."""
    press_join(page, room_url, name, password)
    expect(participants(page).locator("li[data-peer='self']")).to_contain_text(name)


def entry(page: Page, name: str) -> Locator:
    """`name`'s row in the page's participant list."""
    return participants(page).locator("li.participant").filter(has_text=name)


def test_lock_then_password(person: Callable[[], Page], room_url: str) -> None:
    """A locked room turns newcomers away; a password room asks for it, refuses a wrong one and
    lets the right one in; everyone sees the rules' state."""
    ada, bob = person(), person()
    join(ada, room_url, "Ada")
    expect(entry(ada, "Ada")).to_contain_text("host")
    expect(rules(ada)).to_contain_text("Max 8 people")

    settings(ada).get_by_label("Lock room").check()
    expect(rules(ada)).to_contain_text("Locked")
    press_join(bob, room_url, "Bob")
    expect(bob.get_by_role("alert")).to_contain_text("This room is locked")
    expect(join_form(bob).get_by_role("button", name="Join")).to_be_enabled()

    settings(ada).get_by_label("Lock room").uncheck()
    settings(ada).get_by_label("Room password").fill("open sesame")
    settings(ada).get_by_role("button", name="Set password").click()
    expect(rules(ada)).to_contain_text("Password set")
    expect(rules(ada)).not_to_contain_text("Locked")

    press_join(bob, room_url, "Bob")
    expect(bob.get_by_role("alert")).to_contain_text("This room has a password")
    password_box = join_form(bob).get_by_label("Room password")
    expect(password_box).to_be_visible()
    expect(password_box).to_be_focused()
    password_box.fill("open says me")
    join_form(bob).get_by_role("button", name="Join").click()
    expect(bob.get_by_role("alert")).to_contain_text("That password is not right")

    join(bob, room_url, "Bob", password="open sesame")
    expect(rules(bob)).to_contain_text("Password set")
    expect(entry(bob, "Ada")).to_contain_text("host")
    expect(settings(bob)).to_be_hidden()  # only the host has controls
    expect(participants(ada)).to_contain_text("Bob")

    settings(ada).get_by_role("button", name="Remove password").click()
    expect(rules(bob)).not_to_contain_text("Password set")


def test_lobby_admit_and_decline(
    person: Callable[[], Page], room_url: str, artifacts_dir: Path
) -> None:
    """With the lobby on, newcomers wait; the host admits one and declines another, and each
    knocker sees the outcome."""
    ada, bob, cy = person(), person(), person()
    join(ada, room_url, "Ada")
    settings(ada).get_by_label("Lobby (approve newcomers)").check()
    expect(rules(ada)).to_contain_text("Lobby on")

    press_join(bob, room_url, "Bob")
    expect(bob.get_by_text("Waiting for the host to let you in")).to_be_visible()
    ada.get_by_role("button", name="Admit Bob").click()
    join_done = participants(bob).locator("li[data-peer='self']")
    expect(join_done).to_contain_text("Bob")
    expect(participants(ada)).to_contain_text("Bob")
    expect(ada.get_by_role("button", name="Admit Bob")).to_have_count(0)

    press_join(cy, room_url, "Cy")
    expect(cy.get_by_text("Waiting for the host to let you in")).to_be_visible()
    expect(ada.get_by_role("button", name="Decline Cy")).to_be_visible()
    expect(bob.get_by_role("button", name="Decline Cy")).to_have_count(0)  # not the host

    # The host's view with someone knocking, for a human to look at (desktop and phone width).
    ada.set_viewport_size({"width": 1280, "height": 1100})
    ada.screenshot(path=str(artifacts_dir / "rules-host-desktop.png"), full_page=True)
    ada.set_viewport_size({"width": 390, "height": 844})
    ada.screenshot(path=str(artifacts_dir / "rules-host-mobile.png"), full_page=True)

    ada.get_by_role("button", name="Decline Cy").click()
    expect(cy.get_by_role("alert")).to_contain_text("The host declined your request")
    expect(join_form(cy).get_by_role("button", name="Join")).to_be_enabled()
    expect(ada.get_by_role("button", name="Decline Cy")).to_have_count(0)
    expect(participants(ada)).not_to_contain_text("Cy")

    # A knocker who gives up disappears from the host's lobby list.
    dee = person()
    press_join(dee, room_url, "Dee")
    expect(ada.get_by_role("button", name="Admit Dee")).to_be_visible()
    dee.get_by_role("button", name="Stop waiting").click()
    expect(join_form(dee).get_by_role("button", name="Join")).to_be_enabled()
    expect(ada.get_by_role("button", name="Admit Dee")).to_have_count(0)
    expect(ada.get_by_role("region", name="Waiting to join")).to_be_hidden()


def test_remove_and_ban(person: Callable[[], Page], room_url: str) -> None:
    """Remove takes a member out; Ban also keeps that browser out after a reload, but a fresh
    browser profile (a new identity) gets in: what the page's help text says a ban can and cannot do."""
    ada, bob, cy = person(), person(), person()
    join(ada, room_url, "Ada")
    join(bob, room_url, "Bob")
    join(cy, room_url, "Cy")
    expect(settings(ada)).to_contain_text("cannot stop someone who clears their browser data")
    expect(bob.get_by_role("button", name="Remove Cy")).to_have_count(0)  # not the host
    expect(ada.get_by_role("button", name="Remove Ada")).to_have_count(0)  # not yourself

    ada.get_by_role("button", name="Remove Bob").click()
    expect(bob.get_by_role("alert")).to_contain_text("You were removed from the room")
    expect(join_form(bob).get_by_role("button", name="Join")).to_be_enabled()
    expect(participants(bob)).to_be_hidden()
    expect(participants(ada)).not_to_contain_text("Bob")
    expect(participants(cy)).not_to_contain_text("Bob")

    # A ban cannot be undone, so it asks once more; "Do not ban" backs out.
    ada.get_by_role("button", name="Ban Cy").click()
    ada.get_by_role("button", name="Do not ban Cy").click()
    expect(ada.get_by_role("button", name="Ban Cy")).to_be_focused()
    ada.get_by_role("button", name="Ban Cy").click()
    expect(ada.get_by_role("button", name="Confirm ban of Cy")).to_be_focused()
    ada.get_by_role("button", name="Confirm ban of Cy").click()
    expect(cy.get_by_role("alert")).to_contain_text("You were removed from the room and banned")
    expect(participants(ada)).not_to_contain_text("Cy")

    cy.reload()  # same context: same IndexedDB, same identity
    press_join(cy, room_url, "Cy again")
    expect(cy.get_by_role("alert")).to_contain_text("The host has banned you from this room")

    fresh = person()  # a new profile has a new identity: a ban cannot follow it
    join(fresh, room_url, "Cy")
    expect(participants(ada)).to_contain_text("Cy")


def test_host_leaves_next_member_becomes_host(person: Callable[[], Page], room_url: str) -> None:
    """When the host leaves, the longest-present member gets the role and the controls, and
    everyone's list moves the host marker."""
    ada, bob, cy = person(), person(), person()
    join(ada, room_url, "Ada")
    join(bob, room_url, "Bob")
    join(cy, room_url, "Cy")
    expect(settings(bob)).to_be_hidden()

    ada.get_by_role("button", name="Leave").click()
    expect(settings(bob)).to_be_visible()
    expect(entry(bob, "Bob")).to_contain_text("host")
    expect(entry(cy, "Bob")).to_contain_text("host")
    expect(participants(cy)).not_to_contain_text("Ada")
    expect(bob.get_by_role("button", name="Remove Cy")).to_be_visible()
    expect(settings(cy)).to_be_hidden()
    expect(bob.get_by_text("You are the host")).to_be_visible()


def test_maximum_people_lowered(person: Callable[[], Page], room_url: str) -> None:
    """The host lowers the maximum to 2 (the field stops at the server's 8); a third is refused."""
    ada, bob, cy = person(), person(), person()
    join(ada, room_url, "Ada")
    maximum = settings(ada).get_by_label("Maximum people")
    expect(maximum).to_have_value("8")
    expect(maximum).to_have_attribute("max", "8")
    maximum.fill("2")
    settings(ada).get_by_role("button", name="Save").click()
    expect(rules(ada)).to_contain_text("Max 2 people")

    join(bob, room_url, "Bob")
    expect(rules(bob)).to_contain_text("Max 2 people")
    press_join(cy, room_url, "Cy")
    expect(cy.get_by_role("alert")).to_contain_text("This room is full")
    expect(participants(ada)).not_to_contain_text("Cy")


# --- strangers: relay by default, direct only when both allow it ----------------------------------


@pytest.fixture
def turn_server(
    coturn: Coturn, tmp_path: Path, start_xes_server: Callable[..., XesServerProcess]
) -> XesServerProcess:
    """`xes serve` handing out credentials for that coturn."""
    secret_file = tmp_path / "turn-secret"
    secret_file.write_text(coturn.secret + "\n")
    return start_xes_server(
        args=["--turn-url", coturn.url("udp"), "--turn-secret-file", str(secret_file)]
    )


def wait_for_pairs(page: Page) -> dict[str, Any]:
    """The selected ICE pair types of the page's link to the stranger, once one is selected."""
    expect(participants(page).locator("li.participant")).to_have_count(2)
    return wait_for_selected_pairs(page, links=1, timeout_s=CONNECT_TIMEOUT_MS / 1000)


def meet(person: Callable[[], Page], server: XesServerProcess, allow_direct: bool) -> tuple[Page, Page]:
    """Two strangers, each in a fresh profile, with the direct-connection box as given."""
    pages = []
    for name in ("Ada", "Bob"):
        page = person()
        page.goto(server.http_url + "/")
        box = page.get_by_role("region", name="Talk to someone").get_by_label(ALLOW_DIRECT)
        expect(box).not_to_be_checked()  # off unless the user chose otherwise
        if allow_direct:
            box.check()
            page.reload()  # the choice is remembered
            expect(box).to_be_checked()
        ask_for_someone(page, server, name)
        pages.append(page)
    return pages[0], pages[1]


def test_strangers_relay_by_default_direct_when_both_allow(
    person: Callable[[], Page], turn_server: XesServerProcess
) -> None:
    """With TURN configured a match goes through the relay, as the server advises, so neither
    learns the other's address; ticking "Allow a direct connection" on both sides makes it direct."""
    ada, bob = meet(person, turn_server, allow_direct=False)
    for page in (ada, bob):
        assert set(wait_for_pairs(page).values()) == {("relay", "relay")}
        expect(page.get_by_text("they do not see your IP address")).to_be_visible()
    for page in (ada, bob):
        page.get_by_role("button", name="Stop").click()

    ada, bob = meet(person, turn_server, allow_direct=True)
    for page in (ada, bob):
        assert set(wait_for_pairs(page).values()) == {("host", "host")}
        expect(participants(page).get_by_text("Direct", exact=True)).to_have_count(1)
