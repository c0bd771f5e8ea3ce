"""A page's timers stop when the page is left: while compliance is being recounted, the
organization page asks for ``GET /org/mfa`` every second, and leaving it (for Personal settings, or
by signing out) stops that at once; the next person signing in at the same tab sees nothing of the
last admin's organization. A page's requests are abandoned with it: a late answer for a page left
shows nothing. In Chromium against the local stack."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Error, Request, Route, expect

from tests.browser.conftest import OpenConsole
from tests.browser.console import Console, unique_org
from tests.support.stack_client import StackTables

pytestmark = pytest.mark.browser

# The page asks every second while a recount runs; this is three of its turns.
QUIET_SECONDS = 3.0


class StatusRequests:
    """The page's ``GET /org/mfa`` requests, counted as the browser sends them."""

    def __init__(self, console: Console) -> None:
        self.page = console.page
        self.sent = 0
        self.page.on("request", self._seen)

    def _seen(self, request: Request) -> None:
        if request.method == "GET" and re.search(r"/org/mfa$", request.url):
            self.sent += 1

    def over_the_next_seconds(self) -> int:
        """How many the page sends from now on, while the test waits (Playwright reports requests
        only while it is called, so the wait is the page's, not ``time.sleep``)."""
        before = self.sent
        self.page.wait_for_timeout(QUIET_SECONDS * 1000)
        return self.sent - before


def admin_watching_a_recount(open_console: OpenConsole, org: str) -> tuple[Console, StatusRequests]:
    """An admin on the organization page of ``org`` while its compliance is being recounted.

    A policy change starts a recount that the local stack's stream function finishes within a
    second for so small an organization; the test then marks it running again behind the API's
    back (same version, same handoffs, so the stream function leaves it be), as a recount of a
    large organization stays running for minutes."""
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.enable_mfa(key_name="Admin key")
    saved = ada.call("PUT", "/org/mfa/policy", body={"user_verification": "preferred"})
    assert saved.status_code == 200, saved.text
    deadline = time.monotonic() + 30
    while ada.get("/org/mfa")["compliance"] != {"state": "done"}:
        assert time.monotonic() < deadline, "the recount did not finish"
        time.sleep(0.2)
    tables = StackTables(ada.stack)
    tables.client.update_item(
        TableName=tables.table("orgs"),
        Key={"org_id": {"S": org}},
        UpdateExpression="SET compliance_recount.#state = :recounting",
        ExpressionAttributeNames={"#state": "state"},
        ExpressionAttributeValues={":recounting": {"S": "recounting"}},
    )
    assert ada.get("/org/mfa")["compliance"] == {"state": "recounting"}

    asked = StatusRequests(ada)
    ada.go_to("Organization settings")
    expect(ada.page.locator("#compliance-text")).to_contain_text("Recounting whether the 1 member holds")
    # The page keeps asking while the recount runs.
    assert asked.over_the_next_seconds() >= 2
    return ada, asked


def test_leaving_the_organization_page_during_a_recount_stops_asking(open_console: OpenConsole):
    ada, asked = admin_watching_a_recount(open_console, unique_org("timers-leave"))

    ada.go_to("Personal settings")

    assert asked.over_the_next_seconds() == 0, "the organization page's recount timer outlived the page"
    expect(ada.alert()).to_be_hidden()


def test_signing_out_during_a_recount_stops_asking_and_leaves_nothing_to_the_next_person(open_console: OpenConsole):
    org = unique_org("timers-sign-out")
    ada, asked = admin_watching_a_recount(open_console, org)
    page = ada.page
    # Ada looks at a member's enrolment passes and filters the audit log by herself.
    ada.open_section("Members")
    page.get_by_role("table", name="Members").get_by_role("link", name="ada", exact=True).click()
    expect(page.get_by_role("heading", name="Enrolment passes of ada")).to_be_visible()
    ada.open_section("Audit log")
    page.get_by_role("combobox", name="About member").select_option("ada")

    ada.sign_out()
    assert asked.over_the_next_seconds() == 0, "the organization page's recount timer outlived the session"
    expect(ada.alert()).to_be_hidden()

    # Someone else signs in at the same tab, without reloading it: an admin of another organization.
    other = unique_org("timers-next")
    ada.sign_in(org=other, user="zoe", admin=True, reload=False)
    expect(page.locator("#account-name")).to_contain_text(f"zoe · admin of {other}")
    assert asked.over_the_next_seconds() == 0, "the last admin's polling runs in the next person's session"
    ada.go_to("Organization settings")
    expect(page.locator("#compliance-text")).to_have_text("0 of 1 member has a security key")
    screen = page.locator("#screen-organization")
    expect(screen).not_to_contain_text(org)
    expect(page.get_by_role("heading", name=re.compile("Enrolment passes of"))).to_be_hidden()
    ada.open_section("Audit log")
    expect(page.get_by_role("combobox", name="About member")).to_have_value("")
    expect(screen.get_by_role("row").filter(has_text="Admin key")).to_have_count(0)
    expect(ada.alert()).to_be_hidden()


def test_signing_out_while_personal_settings_load_does_not_bring_them_back(open_console: OpenConsole):
    bob = open_console()
    bob.sign_in_to_settings(org=unique_org("timers-personal"), user="bob")
    page = bob.page
    # Bob's list of sessions is slow to come: he signs out before it does.
    held: list[Route] = []
    page.route(re.compile(r"/me/sessions$"), lambda route: held.append(route))
    with page.expect_request(re.compile(r"/me/sessions$")):
        page.get_by_role("link", name="Personal settings").click()
    bob.sign_out()

    page.unroute(re.compile(r"/me/sessions$"))
    try:
        held[0].continue_()
    except Error:
        pass  # the page abandoned the request: there is nothing to answer
    page.wait_for_timeout(1000)  # time for a late answer to render, were it still awaited

    expect(bob.heading("Sign in to keyward")).to_be_visible()
    expect(page.locator("#screen-personal")).to_be_hidden()
    expect(bob.alert()).to_be_hidden()
