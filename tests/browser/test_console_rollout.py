"""The console's roll-out card in Chromium against the local stack: an admin previews enforcement,
enforces it with a grace period, filters members by coverage and offboards one; the keyless
member sees their registration deadline."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenConsole
from tests.browser.console import unique_org

pytestmark = pytest.mark.browser


def test_an_admin_previews_enforces_with_a_grace_period_and_offboards(open_console: OpenConsole):
    org = unique_org("rollout")
    ben = open_console()
    ben.sign_in_to_settings(org=org, user="ben")  # a member without a key
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.enable_mfa(key_name="Admin key")
    ada.go_to("Organization settings")
    ada.open_section("Roll-out")

    page = ada.page
    expect(ada.page.get_by_role("heading", name="Roll-out", level=2)).to_be_visible()
    page.get_by_role("radio", name="After a grace period").check()
    page.get_by_role("spinbutton", name="Grace period (hours)").fill("48")
    ada.button("Preview enforcement").click()
    expect(page.locator("#preview-summary")).to_contain_text("1 of 2 members has no security key")
    expect(page.locator("#preview-members")).to_contain_text("ben")
    assert ada.get("/org/mfa")["enforced"] is False  # the preview changed nothing

    ada.button("Enforce MFA…").click()
    expect(ada.dialog()).to_contain_text("may keep working for 48 hours")
    ada.enforce_from_checklist()
    expect(ada.status()).to_contain_text("MFA is now enforced")
    status = ada.get("/org/mfa")
    assert status["enforced"] is True and status["grace_period_hours"] == 48
    expect(page.locator("#rollout-state")).to_contain_text("Members without a security key have until")
    ada.screenshot("rollout-grace-period")

    # Ben's session ended with the enforcement; signing in again, he may work until the deadline.
    ben.sign_in_to_settings(org=org, user="ben")
    expect(ben.page.locator("#registration-deadline")).to_contain_text("register a security key by")
    assert ben.get("/me")["mfa"]["registration_due_at"] == status["registration_due_at"]

    # The admin finds him among the members without a key and offboards him.
    ada.page.reload()
    expect(ada.page.get_by_role("heading", name="Roll-out", level=2)).to_be_visible()
    page = ada.page
    page.get_by_role("combobox", name="Show").select_option("none")
    expect(page.locator("#coverage-members")).to_contain_text("ben")
    ada.button("Offboard ben").click()
    ada.confirm("Offboard")
    expect(ada.status()).to_contain_text("was offboarded")
    assert [m["id"] for m in ada.get("/org/members")["members"]] == ["ada"]
    assert ben.call("GET", "/me").status_code == 401
    page.get_by_role("combobox", name="Show").select_option("one")
    expect(page.locator("#coverage-members")).to_contain_text("ada")


def test_a_slower_older_read_of_the_coverage_list_never_overwrites_the_one_chosen_since(open_console: OpenConsole):
    org = unique_org("rollout-race")
    ben = open_console()
    ben.sign_in_to_settings(org=org, user="ben")  # a member without a key
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.enable_mfa(key_name="Admin key")
    ada.go_to("Organization settings")
    ada.open_section("Roll-out")
    page = ada.page
    expect(page.get_by_role("heading", name="Roll-out", level=2)).to_be_visible()
    coverage = page.locator("#coverage-members")
    show = page.get_by_role("combobox", name="Show")

    # The list of members without a key answers late; the admin has chosen another list meanwhile.
    def late(route) -> None:
        page.wait_for_timeout(1500)
        route.continue_()

    page.route("**/org/members?mfa=none*", late)
    show.select_option("none")
    show.select_option("one")
    expect(coverage).to_contain_text("ada")
    page.wait_for_timeout(2500)  # the late answer has arrived by now
    expect(coverage).to_contain_text("ada")
    expect(coverage).not_to_contain_text("ben")
    ada.check_accessibility()
