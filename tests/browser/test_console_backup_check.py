"""The console's checklist before enforcing MFA, in Chromium against the local stack: an admin whose
organization has no backup credentials must say so to enforce, is refused in words when they vanish
meanwhile, and sees a lasting warning until she creates them."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenConsole
from tests.browser.console import unique_org

pytestmark = pytest.mark.browser


def test_an_admin_enforces_without_backup_credentials_knowingly_and_is_warned_until_she_creates_them(
    open_console: OpenConsole,
):
    org = unique_org("backup-check")
    ben = open_console()
    ben.sign_in_to_settings(org=org, user="ben")  # a member without a key
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.enable_mfa(key_name="Admin key")
    ada.go_to("Organization settings")
    ada.open_section("Roll-out")
    page = ada.page
    state = page.locator("#rollout-state")
    no_way_back = page.get_by_role("alert").filter(has=page.get_by_role("heading", name="No way back in"))
    expect(no_way_back).to_be_hidden()

    # The checklist read backup credentials that another admin deletes before she enforces: the
    # refusal says why, in words, and nothing changes.
    created = ada.call("POST", "/org/backup-credentials")
    assert created.status_code == 201, created.text
    ada.start_enforcing()
    checklist = ada.dialog().get_by_role("list", name="Pre-flight checklist")
    expect(checklist.get_by_role("listitem").nth(0)).to_have_text(
        "Backup credentials: Ready: the organization has 1 backup credential."
    )
    assert ada.call("DELETE", f"/org/backup-credentials/{created.json()['key_id']}").status_code == 204
    ada.confirm("Enforce MFA")
    expect(ada.alert()).to_contain_text("The organization has no backup credentials: create them first")
    expect(state).to_have_text("MFA is not enforced: members may sign in without a security key.")
    assert ada.get("/org/mfa")["enforced"] is False

    # Asked again, the checklist says what is missing, and enforcing needs her acknowledgement.
    ada.button("Enforce MFA…").click()
    dialog = ada.dialog()
    expect(dialog.get_by_role("heading", name="Before you enforce MFA")).to_be_visible()
    items = checklist.get_by_role("listitem")
    expect(items.nth(0)).to_contain_text("Backup credentials: None. The organization has no backup credentials")
    expect(items.nth(1)).to_have_text("Your own security key: Ready: you hold 1 security key.")
    expect(items.nth(2)).to_contain_text("Members without a security key: 1 of 2 members has no security key yet")
    enforce = dialog.get_by_role("button", name="Enforce MFA", exact=True)
    expect(enforce).to_be_disabled()
    expect(enforce).to_have_accessible_description(re.compile("tick “Enforce without backup credentials”"))
    acknowledgement = dialog.get_by_role("checkbox", name="Enforce without backup credentials")
    expect(acknowledgement).to_have_accessible_description(re.compile("nobody can get back in"))
    ada.screenshot("enforce-checklist-without-backup-credentials")
    acknowledgement.check()
    expect(enforce).to_be_enabled()
    ada.confirm("Enforce MFA")

    expect(ada.status()).to_contain_text("MFA is now enforced")
    expect(state).to_contain_text("MFA is enforced since")
    [event] = ada.get("/org/audit?action=enforcement.enabled")["events"]
    assert event["details"]["without_backup_credentials"] is True

    # Enforced without backup credentials: a warning that stays, through a reload too.
    expect(no_way_back).to_contain_text("nobody can sign in to fix it")
    page.reload()
    expect(no_way_back).to_be_visible()
    ada.screenshot("enforced-without-backup-credentials")

    no_way_back.get_by_role("button", name="Create backup credentials now").click()
    expect(page.get_by_role("heading", name="New backup credentials")).to_be_visible()
    expect(no_way_back).to_be_hidden()
    assert len(ada.get("/org/backup-credentials")["backup_credentials"]) == 1
    page.get_by_role("button", name="I have saved it").click()
    page.reload()
    expect(page.get_by_role("heading", name="Organization settings", level=1)).to_be_visible()
    ada.open_section("Roll-out")
    expect(state).to_contain_text("MFA is enforced since")
    expect(no_way_back).to_be_hidden()


def test_the_advice_to_create_backup_credentials_first_shows_only_while_there_are_none(open_console: OpenConsole):
    org = unique_org("backup-advice")
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.enable_mfa(key_name="Admin key")
    ada.go_to("Organization settings")
    ada.open_section("Overview")
    page = ada.page
    advice = page.get_by_text("Before you enforce MFA, create backup credentials.")
    expect(advice).to_be_visible()

    ada.open_section("Backup credentials")
    page.get_by_role("button", name="Create backup credentials").click()
    expect(page.get_by_role("heading", name="New backup credentials")).to_be_visible()
    page.get_by_role("button", name="I have saved it").click()
    page.reload()
    ada.open_section("Overview")
    expect(page.get_by_role("heading", name="Multi-factor authentication")).to_be_visible()
    expect(advice).to_be_hidden()
    ada.check_accessibility()

    ada.open_section("Backup credentials")
    [credentials] = ada.get("/org/backup-credentials")["backup_credentials"]
    page.get_by_role("button", name=f"Delete backup credentials {credentials['key_id']}").click()
    ada.confirm("Delete backup credentials")
    expect(page.get_by_text("No backup credentials yet.")).to_be_visible()
    ada.open_section("Overview")
    expect(advice).to_be_visible()
