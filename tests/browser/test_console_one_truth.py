"""The organization page tells one truth, in Chromium against the local stack: while compliance is
being recounted every place that shows coverage says so, and all show the figures once it ends; a
refused change (a 409, a step-up cancelled) leaves its switch as stored and reloads the page; and
when keyward cannot be reached one banner says so, a change made meanwhile is reported as not
saved, and the page is current again once keyward answers."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import OpenConsole
from tests.browser.console import Console, unique_org
from tests.support.stack_client import PYNAMODB_TIME_FORMAT, StackTables

pytestmark = pytest.mark.browser

PASS_SWITCH = "Require an enrolment pass for a member's first security key"
BEING_RECOUNTED = "Being recounted — the list appears when the count is done."


def _set_recount_state(console: Console, org: str, state: str) -> None:
    """The recount marked running (or done) behind the API's back, as a recount of a large
    organization stays running for minutes; the stream function leaves a mark it did not move."""
    tables = StackTables(console.stack)
    tables.client.update_item(
        TableName=tables.table("orgs"),
        Key={"org_id": {"S": org}},
        UpdateExpression="SET compliance_recount.#state = :state",
        ExpressionAttributeNames={"#state": "state"},
        ExpressionAttributeValues={":state": {"S": state}},
    )


def _key_checked_long_ago(console: Console, org: str) -> None:
    """The session's last security-key check was long ago: the next admin change needs a step-up."""
    token = console.token()
    assert token
    moment = datetime.now(UTC) - timedelta(hours=1)
    tables = StackTables(console.stack)
    tables.client.update_item(
        TableName=tables.table("sessions-v2"),
        Key={"session_id": {"S": token.split(".")[3]}},
        UpdateExpression="SET key_checked_at = :at",
        ConditionExpression="attribute_exists(session_id)",
        ExpressionAttributeValues={":at": {"S": moment.strftime(PYNAMODB_TIME_FORMAT)}},
    )


def _admin_on_the_organization_page(open_console: OpenConsole, org: str, section: str) -> Console:
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.enable_mfa(key_name="Admin key")
    ada.go_to("Organization settings")
    ada.open_section(section)
    return ada


def _coverage(page: Page, filter_value: str):
    page.get_by_role("combobox", name="Show").select_option(filter_value)
    return page.locator("#coverage-members")


def test_during_a_recount_every_place_of_coverage_says_so_and_all_show_the_figures_after(
    open_console: OpenConsole,
):
    org = unique_org("truth-recount")
    ben = open_console()
    ben.sign_in_to_settings(org=org, user="ben")
    ben.enable_mfa(key_name="Ben's key")
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.enable_mfa(key_name="Admin key")
    saved = ada.call("PUT", "/org/mfa/policy", body={"user_verification": "preferred"})
    assert saved.status_code == 200, saved.text
    deadline = time.monotonic() + 30
    while ada.get("/org/mfa")["compliance"] != {"state": "done"}:
        assert time.monotonic() < deadline, "the recount did not finish"
        time.sleep(0.2)
    _set_recount_state(ada, org, "recounting")
    assert ada.get("/org/mfa")["compliance"] == {"state": "recounting"}

    ada.go_to("Organization settings")
    ada.open_section("Overview")
    page = ada.page
    # The meter shows no number, only that the figure is being recounted.
    expect(page.locator("#compliance-text")).to_have_text(
        "Recounting which of the 2 members hold a security key the policy accepts…"
    )
    expect(page.get_by_role("meter")).to_be_hidden()
    expect(page.locator(".compliance")).to_have_attribute("aria-busy", "true")
    # The members' standing, and both roll-out lists, say the same.
    members = page.locator("#members")
    expect(members.locator("tr").filter(has_text="ben")).to_contain_text("Being recounted")
    expect(members.locator("tr").filter(has_text="ada")).to_contain_text("Being recounted")
    expect(members).not_to_contain_text("Has a security key")
    ada.open_section("Roll-out")
    expect(_coverage(page, "none")).to_have_text(BEING_RECOUNTED)
    expect(_coverage(page, "one")).to_have_text(BEING_RECOUNTED)
    assert "No such members" not in page.locator("#screen-organization").inner_text()
    assert "0 of 2" not in page.locator("#screen-organization").inner_text()
    ada.screenshot("organization-being-recounted")

    # The recount ends: the page, which keeps asking, shows the figures everywhere at once.
    _set_recount_state(ada, org, "done")
    figure = ada.get("/org/mfa")
    assert figure["compliance"] == {"state": "done"} and figure["members_compliant"] == 2
    ada.open_section("Overview")
    expect(page.get_by_role("meter")).to_have_attribute("aria-valuetext", "2 of 2 members have a security key")
    expect(page.locator(".compliance")).not_to_have_attribute("aria-busy", "true")
    expect(members).not_to_contain_text("Being recounted")
    expect(members.locator("tr").filter(has_text="ben")).to_contain_text("Has a security key")
    ada.open_section("Roll-out")
    coverage = page.locator("#coverage-members")
    expect(coverage).to_contain_text("ben")
    expect(coverage).to_contain_text("ada (you)")
    expect(_coverage(page, "none")).to_have_text("No such members.")


def test_an_enforcement_refused_for_a_key_deleted_meanwhile_shows_the_setting_as_stored(open_console: OpenConsole):
    org = unique_org("truth-409")
    ada = _admin_on_the_organization_page(open_console, org, "Overview")
    page = ada.page
    ada.button("Roll out enforcement").click()
    enforce = ada.button("Enforce MFA…")
    expect(enforce).to_be_enabled()

    # Her only key is deleted behind the page's back (another tab of hers).
    [key] = ada.get("/me/mfa/keys")["keys"]
    deleted = ada.call("DELETE", f"/me/mfa/keys/{key['id']}")
    assert deleted.status_code == 204, deleted.text

    enforce.click()
    ada.enforce_from_checklist()
    expect(ada.alert()).to_contain_text("Add a security key of your own")
    # The page read again what is stored: not enforced, and she cannot enforce without a key.
    expect(page.locator("#rollout-state")).to_have_text(
        "MFA is not enforced: members may sign in without a security key."
    )
    expect(enforce).to_be_disabled()
    expect(enforce).to_have_accessible_description(
        "You need a security key of your own before you can enforce MFA: add one in Personal settings."
    )
    assert ada.get("/org/mfa")["enforced"] is False


def test_a_switch_refused_with_409_shows_the_stored_setting(open_console: OpenConsole):
    org = unique_org("truth-conflict")
    ada = _admin_on_the_organization_page(open_console, org, "Enrolment passes")
    page = ada.page
    switch = page.get_by_role("switch", name=PASS_SWITCH)
    expect(switch).not_to_be_checked()
    # Another admin requires passes meanwhile, and ada's own change meets a concurrent one.
    changed = ada.call("PUT", "/org/mfa", body={"enrollment": "pass_required"})
    assert changed.status_code == 200, changed.text
    page.route(
        re.compile(r"/org/mfa$"),
        lambda route: (
            route.fulfill(
                status=409,
                content_type="application/json",
                body='{"Code": "ConcurrentChange", "Message": "Changed meanwhile."}',
            )
            if route.request.method == "PUT"
            else route.fallback()
        ),
    )
    switch.click()  # she asks for "open" → "pass_required" as she sees it; it is refused

    expect(ada.alert()).to_contain_text("Someone changed the same thing at the same moment")
    # Not as she left it, nor as it was on her screen, but as it is stored.
    expect(switch).to_be_checked()
    assert ada.get("/org/mfa")["enrollment"] == "pass_required"


def test_a_cancelled_step_up_leaves_the_switch_as_stored_and_the_page_current(open_console: OpenConsole):
    org = unique_org("truth-step-up")
    ada = _admin_on_the_organization_page(open_console, org, "Enrolment passes")
    page = ada.page
    switch = page.get_by_role("switch", name=PASS_SWITCH)
    expect(switch).not_to_be_checked()
    _key_checked_long_ago(ada, org)
    # A member signs in meanwhile: the page does not list him yet.
    ben = open_console()
    ben.sign_in_to_settings(org=org, user="ben")
    expect(page.locator("#members")).not_to_contain_text("ben")

    switch.click()
    dialog = page.get_by_role("dialog", name="Confirm with your security key")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()

    expect(ada.alert()).to_contain_text("Nothing was changed")
    expect(switch).not_to_be_checked()
    expect(page.locator("#members")).to_contain_text("ben")  # the page was read again
    assert ada.get("/org/mfa")["enrollment"] == "open"


def test_offline_one_banner_says_so_a_change_is_not_saved_and_the_page_is_current_when_back(
    open_console: OpenConsole,
):
    org = unique_org("truth-offline")
    ada = _admin_on_the_organization_page(open_console, org, "Enrolment passes")
    page = ada.page
    switch = page.get_by_role("switch", name=PASS_SWITCH)
    banner = page.locator("#offline")
    expect(banner).to_be_hidden()

    ada.context.set_offline(True)
    ada.button("Refresh").click()
    expect(banner).to_be_visible()
    expect(banner.get_by_role("alert")).to_have_text("keyward cannot be reached.")
    expect(banner.get_by_role("status")).to_have_text("Retrying in 5 s…")
    expect(ada.alert()).to_be_hidden()  # a read that failed is the banner's to tell

    switch.click()
    expect(ada.alert()).to_contain_text("so the change was not saved")
    expect(switch).not_to_be_checked()
    expect(banner.get_by_role("status")).to_contain_text("Your change was not saved.")
    banner.get_by_role("button", name="Retry now").click()
    expect(banner.get_by_role("status")).to_have_text("Your change was not saved. Retrying in 10 s…")
    ada.screenshot("organization-offline")

    # Meanwhile a member signs in; back online, the banner's next try brings the page up to date.
    ben = open_console()
    ben.sign_in_to_settings(org=org, user="ben")
    ada.context.set_offline(False)
    expect(banner).to_be_hidden(timeout=15_000)
    expect(page.locator("#members")).to_contain_text("ben")
    expect(switch).not_to_be_checked()
    assert ada.get("/org/mfa")["enrollment"] == "open"
