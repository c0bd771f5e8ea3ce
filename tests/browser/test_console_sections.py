"""Organization settings in sections, in Chromium against the local stack: the sections' links and
their addresses (back, forward, reload, a pasted link), a few Tabs to "Create backup
credentials", a member's own page with their keys, sessions and enrolment passes, searching
members and keys beyond the page loaded, and the sections' links on a phone."""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.browser.conftest import OpenConsole
from tests.browser.console import NARROW, Console, unique_org

pytestmark = pytest.mark.browser


def _sections(page: Page):
    return page.get_by_role("navigation", name="Organization settings")


def _current(page: Page, section: str) -> None:
    """The section is the page shown: its link marked so, its address and the tab's title."""
    expect(_sections(page).get_by_role("link", name=section, exact=True)).to_have_attribute("aria-current", "page")
    expect(_sections(page).locator("[aria-current]")).to_have_count(1)
    expect(page).to_have_title(f"{section} · Organization settings · keyward")


def _member_signs_in(console: Console, *, org: str, user: str) -> None:
    """A member signs in through the identity provider without a browser of their own."""
    with requests.Session() as http:
        http.trust_env = False
        claims = {"org": org, "user": user, "admin": False}
        minted = http.post(f"{console.stack.api}/dev/id-token", json=claims, timeout=30)
        assert minted.status_code == 200, minted.text
        login = http.post(f"{console.stack.api}/auth/login", json={"id_token": minted.json()["id_token"]}, timeout=30)
        assert login.status_code == 200, login.text


def test_each_section_has_its_own_address_title_and_heading(open_console: OpenConsole):
    org = unique_org("sections")
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    page = ada.page

    ada.go_to("Organization settings")
    expect(page).to_have_url(re.compile(r"#/org/overview$"))
    _current(page, "Overview")
    checklist = page.get_by_role("list", name="Checklist")
    expect(checklist).to_contain_text("Backup credentials: None.")
    expect(checklist).to_contain_text("Your own security key: None.")
    expect(checklist).to_contain_text("Multi-factor authentication: Not enforced")
    expect(page.get_by_role("heading", name="Members", level=2)).to_be_hidden()
    ada.check_accessibility()

    # The checklist leads into the sections; the section's heading takes focus.
    checklist.get_by_role("link", name="Manage backup credentials").click()
    expect(page).to_have_url(re.compile(r"#/org/backup-credentials$"))
    _current(page, "Backup credentials")
    expect(page.get_by_role("heading", name="Backup credentials", level=2)).to_be_focused()
    expect(page.get_by_role("heading", name="Overview", level=2)).to_be_hidden()

    ada.open_section("Members")
    expect(page).to_have_url(re.compile(r"#/org/members$"))
    _current(page, "Members")
    expect(page.get_by_role("heading", name="Members", level=2)).to_be_focused()
    expect(page.get_by_role("button", name="Create backup credentials")).to_be_hidden()
    ada.check_accessibility()

    ada.open_section("Audit log")
    _current(page, "Audit log")

    # Back and forward walk the sections visited.
    page.go_back()
    _current(page, "Members")
    expect(page.get_by_role("heading", name="Members", level=2)).to_be_focused()
    page.go_back()
    _current(page, "Backup credentials")
    page.go_forward()
    _current(page, "Members")

    # A reload keeps the section.
    page.reload()
    _current(page, "Members")
    expect(page.get_by_role("heading", name="Members", level=2)).to_be_visible()

    # A pasted link opens its section; an unknown one the overview, under the overview's address.
    page.goto(f"{ada.stack.api}/#/org/webhooks")
    _current(page, "Webhooks")
    expect(page.get_by_role("heading", name="Webhooks", level=2)).to_be_visible()
    page.goto(f"{ada.stack.api}/#/org/nowhere")
    _current(page, "Overview")
    expect(page).to_have_url(re.compile(r"#/org/overview$"))
    ada.check_accessibility()

    # The overview's way into enforcing leads to the one flow, in Roll-out.
    ada.open_section("Overview")
    ada.button("Roll out enforcement").click()
    _current(page, "Roll-out")
    expect(page).to_have_url(re.compile(r"#/org/rollout$"))
    expect(ada.button("Enforce MFA…")).to_be_visible()


def test_create_backup_credentials_is_a_few_tabs_from_the_top(open_console: OpenConsole):
    org = unique_org("tabs")
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    page = ada.page
    page.goto(f"{ada.stack.api}/#/org/overview")
    _current(page, "Overview")

    tabs = 0

    def tab_to(role: str, name: str) -> None:
        nonlocal tabs
        target = page.get_by_role(role, name=name, exact=True)
        for _ in range(30):
            page.keyboard.press("Tab")
            tabs += 1
            if target.evaluate("element => element === document.activeElement"):
                return
        raise AssertionError(f"Tab never reached the {role} {name!r}")

    tab_to("link", "Backup credentials")
    page.keyboard.press("Enter")
    _current(page, "Backup credentials")
    tab_to("button", "Create backup credentials")

    # The skip link, the two settings pages, Sign out, six sections' links, then the button.
    assert tabs <= 11, tabs
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="New backup credentials")).to_be_visible()
    ada.check_accessibility()
    page.get_by_role("button", name="I have saved it").click()


def test_a_members_page_shows_their_keys_sessions_and_passes(open_console: OpenConsole):
    org = unique_org("member")
    bob = open_console()
    bob.sign_in_to_settings(org=org, user="bob")
    bob.enable_mfa(key_name="Bob's key")
    waiting = open_console()  # another browser of Bob's, waiting for his key
    waiting.sign_in(org=org, user="bob")
    expect(waiting.heading("Use your security key")).to_be_visible()
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    page = ada.page

    ada.go_to("Organization settings")
    ada.open_section("Members")
    page.get_by_role("table", name="Members").get_by_role("link", name="bob", exact=True).click()

    expect(page).to_have_url(re.compile(r"#/org/members/bob$"))
    expect(page.get_by_role("heading", name="bob", level=2)).to_be_focused()
    expect(page).to_have_title("bob · Members · Organization settings · keyward")
    expect(_sections(page).get_by_role("link", name="Members", exact=True)).to_have_attribute("aria-current", "page")
    keys = page.get_by_role("table", name="Security keys")
    expect(keys.get_by_role("row")).to_have_count(2)  # the header and Bob's key
    expect(keys).to_contain_text("Bob's key")
    sessions = page.get_by_role("table", name="Sessions")
    expect(sessions).to_contain_text("Signed in")
    expect(sessions).to_contain_text("Waiting for a security key")
    expect(page.get_by_role("heading", name="Enrolment passes of bob")).to_be_visible()
    ada.check_accessibility()

    # A pass issued from his page.
    ada.button("Issue enrolment pass").click()
    expect(page.get_by_role("heading", name="New enrolment pass")).to_be_visible()
    ada.button("I have given it").click()
    expect(page.get_by_role("table", name=re.compile("Enrolment passes of bob"))).to_contain_text("Active")

    # A reload (or a pasted link) opens his page again.
    page.reload()
    expect(page.get_by_role("heading", name="bob", level=2)).to_be_visible()
    expect(page.get_by_role("table", name="Sessions").get_by_role("row")).to_have_count(3)

    # Ending his sessions signs both of his browsers out.
    ada.button("End every session of bob").click()
    ada.confirm("End sessions")
    expect(ada.status()).to_contain_text("Every session of bob was ended.")
    expect(page.get_by_role("table", name="Sessions")).to_contain_text("Not signed in anywhere.")
    assert bob.call("GET", "/me").status_code == 401

    # His key is deleted from his page as from the keys section.
    ada.button("Delete Bob's key of bob").click()
    ada.confirm("Delete key")
    expect(ada.status()).to_contain_text("Security key “Bob's key” of bob was deleted.")
    expect(page.get_by_role("table", name="Security keys")).to_contain_text("No security key.")
    expect(page.get_by_role("heading", name="bob", level=2)).to_be_focused()
    ada.check_accessibility()

    # Nobody of that ID: the page says so.
    page.goto(f"{ada.stack.api}/#/org/members/nobody")
    expect(page.get_by_role("heading", name="No such member", level=2)).to_be_visible()
    ada.check_accessibility()


def test_searching_members_and_keys_finds_them_beyond_the_page_loaded(open_console: OpenConsole):
    org = unique_org("search")
    mike = open_console()
    mike.sign_in_to_settings(org=org, user="mike")
    mike.enable_mfa(key_name="Mike's key")
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.enable_mfa(key_name="Ada's key")
    # A hundred members before "zoe" by user ID: the members list's first page ends before her.
    for n in range(100):
        _member_signs_in(ada, org=org, user=f"a{n:03}")
    _member_signs_in(ada, org=org, user="zoe")
    page = ada.page

    ada.go_to("Organization settings")
    ada.open_section("Members")
    members = page.get_by_role("table", name="Members")
    expect(ada.button("Load more members")).to_be_visible()
    expect(members.get_by_role("link", name="zoe", exact=True)).to_have_count(0)

    page.get_by_role("searchbox", name="Search members").fill("zo")
    expect(members.get_by_role("link", name="zoe", exact=True)).to_be_visible()
    expect(members.get_by_role("row")).to_have_count(2)
    expect(ada.button("Load more members")).to_be_hidden()
    ada.check_accessibility()

    page.get_by_role("searchbox", name="Search members").fill("nobody")
    expect(members).to_contain_text("No member's user ID starts with “nobody”.")
    page.get_by_role("searchbox", name="Search members").fill("")
    expect(ada.button("Load more members")).to_be_visible()

    ada.open_section("Security keys")
    keys = page.get_by_role("table", name="Security keys")
    expect(keys).to_contain_text("Ada's key")
    page.get_by_role("searchbox", name="Search security keys").fill("mi")
    expect(keys).to_contain_text("Mike's key")
    expect(keys).not_to_contain_text("Ada's key")
    ada.check_accessibility()
    # The owner's name leads to their page.
    keys.get_by_role("link", name="mike", exact=True).click()
    expect(page.get_by_role("heading", name="mike", level=2)).to_be_focused()


def test_the_sections_links_wrap_on_a_phone(open_console: OpenConsole):
    org = unique_org("phone")
    ada = open_console(viewport=NARROW)
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    page = ada.page
    ada.go_to("Organization settings")

    width = page.evaluate("document.documentElement.clientWidth")
    for link in _sections(page).get_by_role("link").all():
        box = link.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, link.text_content()
    ada.screenshot("console-organization-sections-narrow")

    ada.open_section("Audit log")
    _current(page, "Audit log")
    expect(page.get_by_role("heading", name="Audit log", level=2)).to_be_focused()
    ada.check_accessibility()
