"""The one way to enforce MFA, in Chromium against the local stack: the overview says where
enforcement stands and leads into the roll-out flow, which previews, offers at once or a grace
period, asks the pre-flight checklist and enforces; once enforced nothing offers to enforce again,
only to change or end the grace period and to stop enforcing; a refusal shows what is stored."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenConsole
from tests.browser.console import Console, unique_org

pytestmark = pytest.mark.browser

# Any control that would enforce, or lead to enforcing, from scratch.
ENFORCE_OFFER = re.compile(r"^(Enforce MFA|Preview enforcement|Roll out enforcement)|enforce now", re.IGNORECASE)


def _admin_and_keyless_member(open_console: OpenConsole, name: str) -> Console:
    org = unique_org(name)
    ben = open_console()
    ben.sign_in_to_settings(org=org, user="ben")  # a member without a key
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.enable_mfa(key_name="Admin key")
    ada.go_to("Organization settings")
    return ada


def _no_offer_to_enforce(ada: Console) -> None:
    """Neither the overview nor Roll-out offers to enforce; Roll-out is left shown."""
    page = ada.page
    for section in ("Overview", "Roll-out"):
        ada.open_section(section)
        expect(page.get_by_role("switch", name=re.compile("Enforce", re.IGNORECASE))).to_have_count(0)
        expect(page.get_by_role("button", name=ENFORCE_OFFER)).to_have_count(0)
        expect(page.get_by_role("group", name="When members without a security key must register one")).to_have_count(0)


def test_an_admin_enforces_with_a_grace_period_through_the_one_flow_and_is_never_offered_it_again(
    open_console: OpenConsole,
):
    ada = _admin_and_keyless_member(open_console, "flow")
    page = ada.page
    overview = page.locator("#enforcement-state")
    flow = page.locator("#rollout-state")
    expect(overview).to_have_text("MFA is not enforced: members may sign in without a security key.")
    # The switch that enforced on its own is gone: the overview leads into the flow.
    expect(page.get_by_role("switch", name=re.compile("Enforce", re.IGNORECASE))).to_have_count(0)
    ada.button("Roll out enforcement").click()
    expect(page.get_by_role("heading", name="Roll-out", level=2)).to_be_focused()
    expect(flow).to_have_text("MFA is not enforced: members may sign in without a security key.")

    # At once or after a grace period: the hours are asked only for the latter.
    choice = page.get_by_role("group", name="When members without a security key must register one")
    expect(choice.get_by_role("radio", name="At their next sign-in")).to_be_checked()
    hours = page.get_by_role("spinbutton", name="Grace period (hours)")
    expect(hours).to_be_hidden()
    choice.get_by_role("radio", name="After a grace period").check()
    hours.fill("0")  # no grace period is "At their next sign-in", not 0 hours
    ada.button("Enforce MFA…").click()
    expect(ada.status()).to_have_text("The grace period must be a whole number of hours from 1 to 720.")
    expect(hours).to_be_focused()
    expect(ada.dialog()).to_be_hidden()
    hours.fill("48")

    ada.button("Preview enforcement").click()
    expect(page.locator("#preview-summary")).to_contain_text("1 of 2 members has no security key")
    expect(page.get_by_role("list", name="Members without a security key")).to_contain_text("ben")
    expect(page.locator("#preview-admins-summary")).to_have_text("Every admin has a security key.")
    ada.screenshot("enforcement-flow-preview")
    assert ada.get("/org/mfa")["enforced"] is False  # the preview changed nothing

    ada.button("Enforce MFA…").click()
    expect(ada.dialog()).to_contain_text("may keep working for 48 hours")
    ada.enforce_from_checklist()
    expect(ada.status()).to_contain_text("MFA is now enforced")
    status = ada.get("/org/mfa")
    assert (status["enforced"], status["grace_period_hours"]) == (True, 48)

    # Where it stands, in words, in both places; and nothing offers to enforce again.
    for state in (flow, overview):
        expect(state).to_contain_text("MFA is enforced since")
        expect(state).to_contain_text("(by you). Members without a security key have until")
        expect(state).to_contain_text("1 of 2 members has no security key yet.")
    ada.open_section("Overview")
    expect(ada.button("Manage enforcement")).to_be_visible()
    _no_offer_to_enforce(ada)
    ada.screenshot("enforcement-flow-grace-period")
    page.reload()
    expect(flow).to_contain_text("Members without a security key have until")
    _no_offer_to_enforce(ada)

    # The grace period is changed, then ended early; the same enforcement throughout.
    change = page.get_by_role("spinbutton", name="Grace period (hours after enforcing)")
    expect(change).to_have_value("48")
    change.fill("24")
    ada.button("Change grace period").click()
    expect(ada.status()).to_contain_text("The grace period is now 24 hours after enforcing.")
    assert ada.get("/org/mfa")["grace_period_hours"] == 24
    ada.button("End grace period now").click()
    expect(ada.dialog()).to_contain_text("End the grace period now?")
    ada.confirm("End grace period")
    expect(flow).to_contain_text("Members without a security key must register one at their next sign-in.")
    expect(ada.button("End grace period now")).to_be_hidden()
    after = ada.get("/org/mfa")
    assert (after["enforced"], after["grace_period_hours"], after["enforced_at"]) == (True, 0, status["enforced_at"])
    _no_offer_to_enforce(ada)
    ada.check_accessibility()


def test_an_admin_stops_enforcing_in_the_same_flow_after_a_confirmation(open_console: OpenConsole):
    ada = _admin_and_keyless_member(open_console, "flow-stop")
    ada.enforce_mfa()
    page = ada.page
    expect(page.locator("#rollout-state")).to_contain_text(
        "Members without a security key must register one at their next sign-in."
    )

    stop = ada.button("Stop enforcing MFA…")
    expect(stop).to_have_accessible_description(re.compile("Members may then delete all their security keys"))
    stop.click()
    ada.confirm("Cancel")
    assert ada.get("/org/mfa")["enforced"] is True  # cancelled: nothing changed
    stop.click()
    expect(ada.dialog()).to_contain_text("Stop enforcing MFA?")
    ada.screenshot("enforcement-flow-stop")
    ada.confirm("Stop enforcing")
    expect(ada.status()).to_contain_text("MFA is no longer enforced.")
    assert ada.get("/org/mfa")["enforced"] is False
    expect(page.locator("#rollout-state")).to_have_text(
        "MFA is not enforced: members may sign in without a security key."
    )
    expect(page.locator("#enforcement-state")).to_have_text(
        "MFA is not enforced: members may sign in without a security key."
    )
    expect(ada.button("Enforce MFA…")).to_be_visible()
    expect(ada.button("Stop enforcing MFA…")).to_be_hidden()
    ada.check_accessibility()


def test_a_refused_change_shows_the_stored_state_and_never_enforces_again(open_console: OpenConsole):
    ada = _admin_and_keyless_member(open_console, "flow-refused")
    page = ada.page
    ada.start_enforcing()
    ada.enforce_from_checklist()
    expect(ada.button("Change grace period")).to_be_visible()

    # Another admin (her other tab) turns enforcement off behind the page's back.
    assert ada.call("PUT", "/org/mfa", body={"enforced": False}).status_code == 200
    page.get_by_role("spinbutton", name="Grace period (hours after enforcing)").fill("24")
    ada.button("Change grace period").click()
    expect(ada.alert()).to_contain_text("MFA is no longer enforced (another admin turned it off)")
    # The page read again what is stored: not enforced, the way to enforce offered once more.
    expect(page.locator("#rollout-state")).to_have_text(
        "MFA is not enforced: members may sign in without a security key."
    )
    expect(ada.button("Enforce MFA…")).to_be_visible()
    expect(ada.button("Change grace period")).to_be_hidden()
    assert ada.get("/org/mfa")["enforced"] is False
    ada.check_accessibility()

    # Enforcing refused (backup credentials deleted after the checklist read them): the page
    # reloads, and the flow still says MFA is not enforced.
    created = ada.call("POST", "/org/backup-credentials")
    assert created.status_code == 201, created.text
    ada.button("Enforce MFA…").click()
    expect(ada.dialog().get_by_role("list", name="Pre-flight checklist")).to_contain_text(
        "Ready: the organization has 1 backup credential."
    )
    assert ada.call("DELETE", f"/org/backup-credentials/{created.json()['key_id']}").status_code == 204
    ada.confirm("Enforce MFA")
    expect(ada.alert()).to_contain_text("The organization has no backup credentials: create them first")
    expect(page.locator("#rollout-state")).to_have_text(
        "MFA is not enforced: members may sign in without a security key."
    )
    ada.open_section("Backup credentials")
    expect(page.get_by_text("No backup credentials yet.")).to_be_visible()
    assert ada.get("/org/mfa")["enforced"] is False
    ada.check_accessibility()
