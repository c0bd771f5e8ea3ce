"""Rolling out an authenticator policy in the console, in Chromium: the admin sees whom a policy
would affect, her own key included, and may apply it to new registrations only; a member whose
key no longer counts is told which rule it fails and what kind of key would do."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenConsole
from tests.browser.console import Console, unique_org

pytestmark = pytest.mark.browser

VERIFIED_MODELS = "Only models verified by the FIDO Metadata Service"


def _sign_in_with_key(person: Console, *, org: str, user: str, admin: bool = False) -> None:
    person.sign_out()
    person.sign_in(org=org, user=user, admin=admin)
    expect(person.heading("Use your security key")).to_be_visible()
    person.button("Use security key").click()


def test_an_admin_sees_whom_a_policy_affects_and_applies_it_to_new_registrations_only(open_console: OpenConsole):
    org = unique_org("policy-rollout")
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.enable_mfa(key_name="Desk key")
    mia = open_console()
    mia.sign_in_to_settings(org=org, user="mia")
    mia.enable_mfa(key_name="Mia's key")

    ada.go_to("Organization settings")
    ada.open_section("Policy")
    policy = ada.page.get_by_role("region", name="Authenticator policy")
    # The browser's virtual keys attest nothing: requiring verified models disqualifies both.
    policy.get_by_role("combobox", name="Attestation").select_option(label=VERIFIED_MODELS)
    policy.get_by_role("button", name="Check impact").click()
    affected = policy.locator("#policy-affected")
    expect(affected).to_contain_text("2 members would have keys that no longer count, including your own key:")
    items = affected.get_by_role("listitem")
    expect(items).to_have_count(2)
    expect(items.nth(0)).to_contain_text("“Desk key” (the organization requires a key model verified")
    expect(items.nth(1)).to_contain_text("“Mia's key”")

    policy.get_by_role("radio", name="Apply to new registrations only").check()
    policy.get_by_role("button", name="Save policy").click()
    expect(ada.dialog()).to_contain_text("Applied to new registrations only: keys already registered keep counting")
    expect(ada.dialog()).to_contain_text("and your own")
    ada.check_accessibility()
    ada.confirm("Save policy")
    expect(ada.status()).to_contain_text("Authenticator policy saved for new registrations only")
    saved = ada.get("/org/mfa/policy")["policy"]
    assert (saved["attestation"], saved["applies_to"]) == ("required", "new_registrations")
    ada.screenshot("policy-new-registrations-only")

    # Her key, registered before, still signs her in and still counts.
    _sign_in_with_key(ada, org=org, user="ada", admin=True)
    expect(ada.heading("Personal settings")).to_be_visible()
    expect(ada.status()).to_contain_text("Security key accepted")
    # A key the policy accepts carries no note under its name; one it does not, says so.
    expect(ada.key_row("personal-keys", "Desk key")).not_to_contain_text("Not accepted")
    [desk] = ada.get("/me/mfa/keys")["keys"]
    assert desk["policy_compliant"] is True


def test_a_member_whose_key_no_longer_counts_is_told_which_rule_it_fails_and_what_would_do(open_console: OpenConsole):
    org = unique_org("policy-replace")
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.enable_mfa(key_name="Desk key")
    mia = open_console()
    mia.sign_in_to_settings(org=org, user="mia")
    mia.enable_mfa(key_name="Blue key")

    ada.go_to("Organization settings")
    ada.enforce_mfa()
    ada.open_section("Policy")
    policy = ada.page.get_by_role("region", name="Authenticator policy")
    policy.get_by_role("combobox", name="Attestation").select_option(label=VERIFIED_MODELS)
    expect(policy.get_by_role("radio", name="Apply to all keys now")).to_be_checked()
    policy.get_by_role("button", name="Save policy").click()
    expect(ada.dialog()).to_contain_text("Affected: ")
    expect(ada.dialog()).to_contain_text("including your own key")
    ada.confirm("Save policy")
    expect(ada.status()).to_contain_text("Authenticator policy saved")
    assert ada.get("/org/mfa/policy")["policy"]["applies_to"] == "all_keys"

    _sign_in_with_key(mia, org=org, user="mia")
    expect(mia.heading("Register a security key your organization accepts")).to_be_visible()
    expect(mia.page.locator("#register-explanation")).to_have_text(
        "Your key “Blue key” no longer counts: the organization requires a key model verified by the FIDO "
        "Metadata Service. Register a security key that is a model verified by the FIDO Metadata Service."
    )
    expect(mia.status()).not_to_contain_text("Security key accepted")
    mia.screenshot("policy-key-to-replace")
