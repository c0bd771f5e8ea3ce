"""A policy change with a grace period in the console, in Chromium: the admin chooses the period in
the policy card and sees until when the affected members keep passing MFA; a member whose key the
policy stops counting keeps signing in with it and is told which rule it fails and by when to
register one that counts."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenConsole
from tests.browser.console import unique_org

pytestmark = pytest.mark.browser

VERIFIED_MODELS = "Only models verified by the FIDO Metadata Service"


def test_an_admin_gives_a_grace_period_and_the_member_sees_the_deadline(open_console: OpenConsole):
    org = unique_org("policy-grace")
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.enable_mfa(key_name="Desk key")
    mia = open_console()
    mia.sign_in_to_settings(org=org, user="mia")
    mia.enable_mfa(key_name="Mia's key")

    ada.go_to("Organization settings")
    ada.enforce_mfa()
    ada.open_section("Policy")
    policy = ada.page.get_by_role("region", name="Authenticator policy")
    # The browser's virtual keys attest nothing: requiring verified models disqualifies both.
    policy.get_by_role("combobox", name="Attestation").select_option(label=VERIFIED_MODELS)
    expect(policy.get_by_role("combobox", name="Grace period")).to_be_hidden()
    policy.get_by_role("radio", name="Apply to all keys after a grace period").check()
    policy.get_by_role("combobox", name="Grace period").select_option(label="3 days")
    policy.get_by_role("button", name="Check impact").click()
    impact = policy.get_by_role("status")
    expect(impact).to_contain_text("once the grace period ends on")
    expect(impact).to_contain_text("(in 3 days) their keys keep counting: 2 members who would hold no key")
    ada.check_accessibility()

    policy.get_by_role("button", name="Save policy").click()
    expect(ada.dialog()).to_contain_text("keep passing MFA until then")
    expect(ada.dialog()).to_contain_text("including your own key")
    ada.check_accessibility()
    ada.confirm("Save policy")
    expect(ada.status()).to_contain_text("Authenticator policy saved: keys it stops counting keep counting until")
    saved = ada.get("/org/mfa/policy")["policy"]
    assert (saved["attestation"], saved["applies_to"]) == ("required", "all_keys")
    assert saved["grace_until"]
    expect(policy.locator("#policy-grace-status")).to_contain_text(
        "Keys the last change stopped counting keep counting until"
    )
    ada.screenshot("policy-grace-period")

    # Mia's key still signs her in, and her settings say which rule it fails and by when to act.
    # Enforcing ended her session: she signs in again, with her key.
    mia.sign_in(org=org, user="mia")
    expect(mia.heading("Use your security key")).to_be_visible()
    mia.button("Use security key").click()
    expect(mia.heading("Personal settings")).to_be_visible()
    notice = mia.page.get_by_role("note").filter(has_text="no longer accepts your key")
    expect(notice).to_contain_text(
        "Your organization's policy no longer accepts your key “Mia's key”: the organization requires a key "
        "model verified by the FIDO Metadata Service."
    )
    expect(notice).to_contain_text(re.compile(r"It keeps working until .+ \(in 3 days\)\. Register a security key"))
    expect(notice).to_contain_text("by then to keep signing in.")
    expect(notice.locator("time")).to_have_attribute("datetime", saved["grace_until"])
    expect(mia.page.get_by_role("table", name="Your security keys").get_by_role("row").nth(1)).to_contain_text(
        re.compile(r"Mia's key\s*Counts until .+, then not accepted by your organization's policy")
    )
    mia.screenshot("policy-grace-member-notice")
