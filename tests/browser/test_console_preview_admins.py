"""The console's enforcement preview names the admins who hold no security key, and the
organization page says the compliance figure is being recounted after a policy change instead of
showing a stale one; in Chromium against the local stack."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenConsole
from tests.browser.console import unique_org

pytestmark = pytest.mark.browser


def test_the_preview_names_the_admins_without_a_key(open_console: OpenConsole):
    org = unique_org("preview-admins")
    cy = open_console()
    cy.sign_in_to_settings(org=org, user="cy", admin=True)  # an admin who registered no key
    ben = open_console()
    ben.sign_in_to_settings(org=org, user="ben")
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.enable_mfa(key_name="Admin key")
    ada.go_to("Organization settings")
    ada.open_section("Roll-out")

    page = ada.page
    expect(page.get_by_role("heading", name="Roll-out", level=2)).to_be_visible()
    ada.button("Preview enforcement").click()
    expect(page.locator("#preview-admins-summary")).to_contain_text("1 of 2 admins has no security key")
    admins = page.get_by_role("list", name="Admins without a security key")
    # The demo sign-in sends no name or email: the admin is named by user ID, as in the members list.
    expect(admins.get_by_role("listitem")).to_have_text(["cy"])
    preview = ada.get("/org/mfa/preview")
    assert [m["id"] for m in preview["admins_without_key_first_page"]] == ["cy"]
    assert ada.get("/org/mfa")["enforced"] is False  # the preview changed nothing
    ada.check_accessibility()
    ada.screenshot("rollout-preview-admins")

    # cy registers a key: the next preview says every admin has one.
    cy.enable_mfa(key_name="Cy's key")
    ada.button("Preview enforcement").click()
    expect(page.locator("#preview-admins-summary")).to_have_text("Every admin has a security key.")
    expect(page.get_by_role("list", name="Admins without a security key")).to_have_count(0)


def test_the_page_shows_a_recount_then_the_figure_never_a_stale_one(open_console: OpenConsole):
    org = unique_org("recount")
    ben = open_console()
    ben.sign_in_to_settings(org=org, user="ben")
    ben.enable_mfa(key_name="Ben's key")
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.enable_mfa(key_name="Admin key")
    ada.go_to("Organization settings")
    ada.open_section("Roll-out")
    expect(ada.page.locator("#compliance-text")).to_have_text("2 of 2 members have a security key")

    # The virtual authenticators' model is denied: neither key counts once recounted.
    [key] = ada.get("/me/mfa/keys")["keys"]
    saved = ada.call("PUT", "/org/mfa/policy", body={"denied_aaguids": [key["aaguid"]]})
    assert saved.status_code == 200, saved.text
    ada.page.reload()
    expect(ada.page.locator("#compliance-text")).to_have_text("0 of 2 members have a security key", timeout=30_000)
    assert "null" not in ada.page.locator("#compliance-text").inner_text()
    assert ada.get("/org/mfa")["compliance"] == {"state": "done"}
    # The members list says both hold keys, none of them accepted.
    ada.page.reload()
    expect(ada.page.get_by_text("No accepted security key", exact=True)).to_have_count(2)
    ada.check_accessibility()
