"""The authenticator policy in the console, in Chromium: an admin sees what a policy would leave
non-compliant before saving it, every key shows its model and whether it counts, and a key the
policy refuses is refused with the policy's reason in words."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenConsole
from tests.browser.console import unique_org

pytestmark = pytest.mark.browser

REFUSED_FOR_ATTESTATION = (
    "Your organization accepts only security key models verified by the FIDO Metadata Service, and this key's "
    "model could not be verified. It was not registered: use another key, or ask an admin which models are accepted."
)


def test_an_admin_sees_the_impact_of_a_policy_before_saving_it(open_console: OpenConsole):
    org = unique_org("policy")
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.enable_mfa(key_name="Desk key")
    # The browser's virtual key attests nothing: any key counts until the policy asks for more.
    expect(ada.key_row("personal-keys", "Desk key")).not_to_contain_text("Not accepted")
    ada.go_to("Organization settings")
    ada.open_section("Policy")

    policy = ada.page.get_by_role("region", name="Authenticator policy")
    expect(policy).to_be_visible()
    attestation = policy.get_by_role("combobox", name="Attestation")
    expect(attestation).to_have_value("none")
    attestation.select_option(label="Only models verified by the FIDO Metadata Service")
    policy.get_by_role("button", name="Check impact").click()
    expect(policy.get_by_role("status")).to_have_text(
        "With this policy, 1 of 1 security key would not count, "
        "and 1 of 1 member with keys would hold no key that counts."
    )
    assert ada.get("/org/mfa/policy")["policy"]["attestation"] == "none"  # only counted

    policy.get_by_role("button", name="Save policy").click()
    expect(ada.dialog()).to_contain_text("1 of 1 security key would not count")
    ada.confirm("Save policy")
    expect(ada.status()).to_contain_text("Authenticator policy saved")
    assert ada.get("/org/mfa/policy")["policy"]["attestation"] == "required"
    ada.open_section("Security keys")
    expect(ada.key_row("org-keys", "Desk key")).to_contain_text("not accepted: it does not prove its model")
    ada.open_section("Overview")
    expect(ada.page.get_by_role("meter")).to_have_attribute("aria-valuetext", "0 of 1 member has a security key")
    ada.screenshot("authenticator-policy")


def test_a_malformed_aaguid_is_refused_with_the_reason_and_nothing_saved(open_console: OpenConsole):
    org = unique_org("policy-bad")
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.enable_mfa(key_name="Desk key")
    ada.go_to("Organization settings")
    ada.open_section("Policy")
    policy = ada.page.get_by_role("region", name="Authenticator policy")
    policy.get_by_role("textbox", name="Denied models").fill("not-a-model")
    policy.get_by_role("button", name="Save policy").click()
    expect(ada.alert()).to_contain_text("not an AAGUID")
    assert ada.get("/org/mfa/policy")["policy"]["denied_aaguids"] == []


def test_a_key_the_policy_refuses_is_refused_with_the_reason(open_console: OpenConsole):
    org = unique_org("policy-refused")
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.enable_mfa(key_name="Desk key")
    ada.go_to("Organization settings")
    ada.open_section("Policy")
    policy = ada.page.get_by_role("region", name="Authenticator policy")
    policy.get_by_role("combobox", name="Attestation").select_option(
        label="Only models verified by the FIDO Metadata Service"
    )
    policy.get_by_role("button", name="Save policy").click()
    ada.confirm("Save policy")
    expect(ada.status()).to_contain_text("Authenticator policy saved")

    # The browser's virtual key proves no model the metadata lists.
    ada.go_to("Personal settings")
    ada.keys.plug_in_new()
    ada.page.get_by_role("textbox", name="Key name").fill("Travel key")
    ada.button("Add key").click()
    expect(ada.alert()).to_have_text(REFUSED_FOR_ATTESTATION)
    expect(ada.page.get_by_role("textbox", name="Key name")).to_have_value("Travel key")
    assert [key["name"] for key in ada.get("/me/mfa/keys")["keys"]] == ["Desk key"]
    ada.screenshot("key-refused-by-policy")
