"""The console calls the signed-in admin "you" on the organization page, in Chromium against the
local stack: no Offboard beside her own name, her own keys labelled as hers, and under
enforcement a member's last key (hers included) refused with the rule in words and left listed."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenConsole
from tests.browser.console import unique_org

pytestmark = pytest.mark.browser


def test_the_only_admin_is_you_and_a_last_key_stays_under_enforcement(open_console: OpenConsole):
    org = unique_org("yourself")
    lea = open_console()
    lea.sign_in_to_settings(org=org, user="lea")
    lea.enable_mfa(key_name="Lea's key")
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.enable_mfa(key_name="Ada's key")
    ada.go_to("Organization settings")
    ada.enforce_mfa()
    page = ada.page
    expect(page.locator("#enforcement-state")).to_contain_text("(by you).")

    # The members table and the roll-out card name her "you", and offer no way to offboard herself.
    ada.open_section("Members")
    own_row = page.locator("#members tr").filter(has_text="ada")
    expect(own_row).to_contain_text("ada (you)")
    expect(own_row.get_by_role("button", name="End the sessions of ada")).to_have_count(0)
    ada.open_section("Roll-out")
    page.get_by_role("combobox", name="Show").select_option("one")
    coverage = page.locator("#coverage-members")
    expect(coverage).to_contain_text("ada (you)")
    expect(ada.button("Offboard lea")).to_be_visible()
    expect(ada.button("Offboard ada")).to_have_count(0)
    expect(coverage.locator("tr").filter(has_text="ada")).to_contain_text("Another admin can offboard you.")

    # The organization's keys: hers are "yours", the member's are the member's.
    ada.open_section("Security keys")
    expect(ada.key_row("org-keys", "Ada's key")).to_contain_text("You")
    expect(ada.button("Delete Ada's key of ada")).to_have_count(0)
    expect(ada.key_row("org-keys", "Lea's key")).to_contain_text("lea")
    ada.screenshot("organization-yourself")

    # Lea's only key, under enforcement: refused, said in words, and still listed.
    ada.button("Delete Lea's key of lea").click()
    expect(ada.dialog()).to_contain_text("a member's last key cannot be deleted: offboard them to remove it")
    ada.confirm("Delete key")
    expect(ada.alert()).to_contain_text("lea must keep at least one security key")
    expect(ada.alert()).to_contain_text("“Lea's key” is their last one, and it was not deleted.")
    expect(ada.alert()).to_contain_text("To remove it, offboard lea.")
    expect(ada.key_row("org-keys", "Lea's key")).to_have_count(1)
    assert [key["name"] for key in ada.get("/org/mfa/keys?user_id=lea")["keys"]] == ["Lea's key"]

    # Her own last key, from the organization's keys: the same rule as in Personal settings.
    ada.button("Delete your key Ada's key").click()
    dialog = ada.dialog()
    expect(dialog).to_contain_text("Delete your key “Ada's key”?")
    expect(dialog.get_by_role("checkbox", name="End your other sessions too")).not_to_be_checked()
    ada.confirm("Delete key")
    expect(ada.alert()).to_contain_text("you must keep at least one security key: “Ada's key” is your last one")
    expect(ada.key_row("org-keys", "Ada's key")).to_have_count(1)
    assert ada.get("/me")["mfa"]["key_count"] == 1
    ada.screenshot("organization-last-key-refused")
