"""How the console speaks of a member's number of security keys, in Chromium against the running
local stack: with one key it asks (dismissibly) for a second, since losing the only key means
asking an admin, and stops once there are two; and counts of one and of more read in the right
grammar, on the personal page and in the organization's compliance figure."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenConsole
from tests.browser.console import unique_org

pytestmark = pytest.mark.browser


def test_after_the_first_key_the_console_asks_for_a_second_until_there_are_two(open_console: OpenConsole):
    org = unique_org("second-key")
    mia = open_console()
    mia.sign_in_to_settings(org=org, user="mia")
    prompt = mia.page.get_by_role("region", name="Add a second security key")
    expect(prompt).to_be_hidden()  # no key yet: nothing to back up
    # An open organization asks for no enrolment code.
    expect(mia.page.get_by_role("textbox", name="Enrolment code")).to_be_hidden()

    mia.enable_mfa(key_name="Blue YubiKey")
    expect(prompt).to_be_visible()
    expect(prompt).to_contain_text("If you lose it, you cannot sign in until an admin helps you.")
    expect(mia.page.locator("#personal-mfa-state")).to_contain_text("MFA is on: you have 1 security key,")
    mia.screenshot("second-key-prompt")

    # "Not now" puts it away for this tab, and a reload does not bring it back.
    prompt.get_by_role("button", name="Not now").click()
    expect(prompt).to_be_hidden()
    expect(mia.page.get_by_role("textbox", name="Key name")).to_be_focused()
    mia.page.reload()
    expect(mia.heading("Personal settings")).to_be_visible()
    expect(mia.key_row("personal-keys", "Blue YubiKey")).to_have_count(1)
    expect(prompt).to_be_hidden()

    # The next sign-in asks again; "Add a second key" leads to the key's name.
    mia.sign_out()
    mia.page.evaluate("sessionStorage.clear()")  # a new tab
    mia.sign_in(org=org, user="mia")
    mia.button("Use security key").click()
    expect(mia.heading("Personal settings")).to_be_visible()
    expect(prompt).to_be_visible()
    prompt.get_by_role("button", name="Add a second key").click()
    name = mia.page.get_by_role("textbox", name="Key name")
    expect(name).to_be_focused()

    mia.add_key(key_name="Spare key")
    expect(prompt).to_be_hidden()
    expect(mia.page.locator("#personal-mfa-state")).to_contain_text("MFA is on: you have 2 security keys,")
    assert [key["name"] for key in mia.get("/me/mfa/keys")["keys"]] == ["Blue YubiKey", "Spare key"]


def test_disabling_mfa_names_the_only_key_or_all_of_them(open_console: OpenConsole):
    org = unique_org("key-count")
    noah = open_console()
    noah.sign_in_to_settings(org=org, user="noah")
    noah.enable_mfa(key_name="Blue YubiKey")

    noah.button("Disable MFA").click()
    dialog = noah.page.get_by_role("dialog", name="Disable MFA?")
    expect(dialog).to_have_accessible_description(
        "This deletes your only security key. keyward will no longer ask for a key when you sign in."
    )
    noah.confirm("Cancel")

    noah.add_key(key_name="Spare key")
    noah.button("Disable MFA").click()
    expect(dialog).to_have_accessible_description(
        "This deletes all 2 of your security keys. keyward will no longer ask for a key when you sign in."
    )
    noah.confirm("Cancel")
    assert len(noah.get("/me/mfa/keys")["keys"]) == 2


def test_the_compliance_figure_agrees_with_one_member_and_with_several(open_console: OpenConsole):
    org = unique_org("count-members")
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.enable_mfa(key_name="Desk key")
    ada.go_to("Organization settings")
    ada.open_section("Overview")
    meter = ada.page.get_by_role("meter", name="Members with a security key")
    expect(meter).to_have_attribute("aria-valuetext", "1 of 1 member has a security key")

    ben = open_console()
    ben.sign_in_to_settings(org=org, user="ben")
    cleo = open_console()
    cleo.sign_in_to_settings(org=org, user="cleo")
    # The current section's link brings the page up to date.
    ada.open_section("Overview")
    expect(meter).to_have_attribute("aria-valuetext", "1 of 3 members has a security key")

    ben.enable_mfa(key_name="Ben's key")
    ada.open_section("Overview")
    expect(meter).to_have_attribute("aria-valuetext", "2 of 3 members have a security key")
    expect(ada.page.locator("#compliance-text")).to_have_text("2 of 3 members have a security key")
