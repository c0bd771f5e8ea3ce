"""Enrolment passes in the web console, in Chromium against the running local stack: an admin
requires passes and issues a member's pass (its code shown once, gone when dismissed or on
sign-out), and the member, shown the code field from the start, enters the code when registering
a first security key — from Personal settings, and from the registration an enforcing
organization requires at sign-in."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenConsole
from tests.browser.console import Console, unique_org

pytestmark = pytest.mark.browser

CODE = re.compile(r"^[A-HJKMNP-TV-Z2-9]{5}(-[A-HJKMNP-TV-Z2-9]{5}){3}$")


def _admin_requiring_passes(open_console: OpenConsole, org: str, *, enforce: bool = False) -> Console:
    admin = open_console()
    admin.sign_in_to_settings(org=org, user="alice", admin=True)
    admin.enable_mfa(key_name="Alice's key")
    admin.go_to("Organization settings")
    if enforce:
        admin.enforce_mfa()
    admin.open_section("Enrolment passes")
    switch = admin.page.get_by_role("switch", name="Require an enrolment pass for a member's first security key")
    expect(switch).not_to_be_checked()
    switch.click()
    expect(admin.status()).to_contain_text("now needs an enrolment pass")
    expect(switch).to_be_checked()
    assert admin.get("/org/mfa")["enrollment"] == "pass_required"
    return admin


def _issue_pass(admin: Console, member_name: str) -> str:
    """Open the member's page from the members table and issue one of their passes; returns the
    code shown."""
    admin.page.reload()
    expect(admin.heading("Organization settings")).to_be_visible()
    admin.open_member(member_name)
    expect(admin.page.get_by_role("heading", name=f"Enrolment passes of {member_name}")).to_be_visible()
    admin.button("Issue enrolment pass").click()
    expect(admin.status()).to_contain_text(f"Enrolment pass issued to {member_name}")
    code = admin.page.locator("#pass-new-code")
    expect(code).to_have_text(CODE)
    return code.inner_text()


def test_an_admin_issues_a_pass_and_the_member_enables_mfa_with_its_code(open_console: OpenConsole):
    org = unique_org("pass-console")
    alice = _admin_requiring_passes(open_console, org)

    bob = open_console()
    bob.sign_in_to_settings(org=org, user="bob")
    # The organization requires a pass: the field is there from the start, with what it is for.
    code_box = bob.page.get_by_role("textbox", name="Enrolment code")
    expect(code_box).to_be_visible()
    expect(code_box).to_have_accessible_description(re.compile("requires an enrolment pass for your first"))
    bob.page.get_by_role("textbox", name="Key name").fill("Bob's key")
    bob.button("Enable").click()
    # Asked for the code before the security key is: nothing was registered.
    expect(bob.alert()).to_contain_text("requires an enrolment pass")
    expect(code_box).to_be_focused()
    assert bob.get("/me")["mfa"]["key_count"] == 0

    code = _issue_pass(alice, "bob")
    [listed] = alice.get("/org/members/bob/enrollment-passes")["enrollment_passes"]
    assert listed["state"] == "active" and code not in str(listed)
    expect(alice.page.locator("#passes-list tr")).to_contain_text("Active")
    alice.screenshot("enrollment-pass-issued")
    # Dismissed, the code is gone from the page for good.
    alice.button("I have given it").click()
    expect(alice.page.locator("#pass-new")).to_be_hidden()
    expect(alice.page.locator("#pass-new-code")).to_have_text("")

    # A mistyped code is refused and changes nothing.
    code_box.fill("ABCDE-FGHJK-MNPQR-STVWX")
    bob.button("Enable").click()
    expect(bob.alert()).to_contain_text("That enrolment code is not valid")
    assert bob.get("/me")["mfa"]["key_count"] == 0

    code_box.fill(code.lower())
    bob.button("Enable").click()
    expect(bob.status()).to_contain_text("Security key “Bob's key” was added")
    expect(bob.key_row("personal-keys", "Bob's key")).to_have_count(1)
    expect(code_box).to_be_hidden()
    assert bob.get("/me")["mfa"] == {
        "enabled": True,
        "key_count": 1,
        "registration_due_at": None,
        "enrollment_code_required": False,
    }
    bob.screenshot("enrollment-pass-used")

    # A second key needs no code.
    bob.add_key(key_name="Spare key")

    alice.open_member("bob")
    expect(alice.page.locator("#passes-list tr")).to_contain_text("Used")
    [used] = alice.get("/org/members/bob/enrollment-passes")["enrollment_passes"]
    assert used["state"] == "used"


def test_the_code_is_gone_after_sign_out_and_a_pass_can_be_revoked(open_console: OpenConsole):
    org = unique_org("pass-sign-out")
    alice = _admin_requiring_passes(open_console, org)
    carol = open_console()
    carol.sign_in_to_settings(org=org, user="carol")

    code = _issue_pass(alice, "carol")
    alice.sign_out()
    assert alice.page.locator("#pass-new-code").inner_text() == ""
    assert code not in alice.page.content()

    alice.sign_in(org=org, user="alice", admin=True)
    alice.button("Use security key").click()
    expect(alice.heading("Personal settings")).to_be_visible()
    alice.go_to("Organization settings")
    alice.open_member("carol")
    alice.page.get_by_role("button", name=re.compile("^Revoke the enrolment pass of carol")).click()
    alice.confirm("Revoke pass")
    expect(alice.status()).to_contain_text("The enrolment pass of carol was revoked")
    expect(alice.page.locator("#passes-list tr")).to_contain_text("Revoked")

    carol.page.get_by_role("textbox", name="Key name").fill("Carol's key")
    carol.button("Enable").click()
    code_box = carol.page.get_by_role("textbox", name="Enrolment code")
    code_box.fill(code)
    carol.button("Enable").click()
    expect(carol.alert()).to_contain_text("That enrolment code is not valid")
    assert carol.get("/me")["mfa"]["key_count"] == 0


def test_a_member_made_to_register_at_sign_in_enters_the_code(open_console: OpenConsole):
    org = unique_org("pass-forced")
    alice = _admin_requiring_passes(open_console, org, enforce=True)

    dan = open_console()
    dan.sign_in(org=org, user="dan")
    expect(dan.heading("Register your security key")).to_be_visible()
    code_box = dan.page.get_by_role("textbox", name="Enrolment code")
    expect(code_box).to_be_visible()  # from the start
    dan.page.get_by_role("textbox", name="Key name").fill("Dan's key")
    dan.button("Register security key").click()
    expect(dan.alert()).to_contain_text("requires an enrolment pass")
    expect(code_box).to_be_focused()
    assert dan.get("/me")["session"]["state"] == "registration_required"
    dan.screenshot("enrollment-pass-required-at-sign-in")

    code_box.fill(_issue_pass(alice, "dan"))
    dan.button("Register security key").click()

    expect(dan.heading("Personal settings")).to_be_visible()
    expect(dan.key_row("personal-keys", "Dan's key")).to_have_count(1)
    me = dan.get("/me")
    assert me["session"]["state"] == "active" and me["mfa"] == {
        "enabled": True,
        "key_count": 1,
        "registration_due_at": None,
        "enrollment_code_required": False,
    }
