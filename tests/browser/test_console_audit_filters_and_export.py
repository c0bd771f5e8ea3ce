"""Organization settings → Audit log in Chromium, in a browser whose time zone is Auckland's: an
admin filters by who acted and by a range of days (days of her own time zone, sent as UTC), sees
the filters she applied, exports what she sees as CSV and NDJSON files, and is told where an
export stops or that she cancelled it."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Route, expect

from tests.browser.conftest import OpenConsole
from tests.browser.console import Console, unique_org
from tests.support.stack_client import StackTables

pytestmark = pytest.mark.browser

# New Zealand daylight time in March: UTC+13, so a day there starts at 11:00 UTC the day before.
TIME_ZONE = "Pacific/Auckland"
# (UTC time, actor, actor kind, action, whom it concerns, target)
SEEDED = [
    ("2026-03-09T10:30:00Z", "mallory", "member", "key.deleted", "bob", "k-1"),  # 9 March, 23:30 there
    ("2026-03-09T11:30:00Z", "mallory", "member", "key.deleted", "carol", '=HYPERLINK("x")'),  # 10 March, 00:30
    ("2026-03-10T10:59:00Z", "operator", "operator", "enforcement.disabled", None, None),  # 10 March, 23:59
    ("2026-03-10T11:00:00Z", "mallory", "member", "login", "mallory", "mallory"),  # 11 March, 00:00
]


def _seed(stack, org: str) -> None:
    """Events of March, written to the log as keyward writes them (a console cannot make old
    events), in an organization made to have existed then (the log is read back to its creation)."""
    tables = StackTables(stack)
    tables.client.update_item(
        TableName=StackTables.table("orgs"),
        Key={"org_id": {"S": org}},
        UpdateExpression="SET created_at = :then",
        ExpressionAttributeValues={":then": {"S": "2026-03-01T00:00:00.000000+0000"}},
    )
    for number, (moment, actor, kind, action, user_id, target) in enumerate(SEEDED):
        at = datetime.fromisoformat(moment)
        item = {
            "shard_key": {"S": f"{org}#{at.strftime('%Y-%m-%d')}#0"},
            "org_id": {"S": org},
            "event_key": {"S": f"{at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}#0000000{number}"},
            "at": {"S": at.strftime("%Y-%m-%dT%H:%M:%S.%f+0000")},
            "actor": {"S": actor},
            "actor_kind": {"S": kind},
            "action": {"S": action},
            "ttl": {"N": str(int((datetime.now(UTC) + timedelta(days=1)).timestamp()))},
        }
        if user_id:
            item["user_id"] = {"S": user_id}
        if target:
            item["target"] = {"S": target}
        tables.client.put_item(TableName=StackTables.table("audit-log"), Item=item)


def _admin_in_auckland(open_console: OpenConsole, org: str, *, seeded_in: object = None) -> Console:
    """Ada, an admin, on the organization's settings; with the March events seeded once her
    sign-in made the organization, when ``seeded_in`` is the stack."""
    ada = open_console()
    cdp = ada.context.new_cdp_session(ada.page)
    cdp.send("Emulation.setTimezoneOverride", {"timezoneId": TIME_ZONE})
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    if seeded_in is not None:
        _seed(seeded_in, org)
    ada.go_to("Organization settings")
    ada.open_section("Audit log")
    return ada


def _queries(console: Console, path: str) -> list[dict[str, list[str]]]:
    """The query of each request the page makes to ``path``, from now on."""
    seen: list[dict[str, list[str]]] = []
    console.page.on(
        "request",
        lambda request: (
            seen.append(parse_qs(urlsplit(request.url).query)) if urlsplit(request.url).path.endswith(path) else None
        ),
    )
    return seen


def _download(console: Console, button: str) -> tuple[str, str]:
    with console.page.expect_download() as started:
        console.button(button).click()
    download = started.value
    return download.suggested_filename, Path(download.path()).read_text(encoding="utf-8")


def test_an_admin_filters_by_who_acted_and_by_days_of_her_time_zone_and_exports_what_she_sees(
    open_console: OpenConsole, stack
):
    org = unique_org("audit-export")
    ada = _admin_in_auckland(open_console, org, seeded_in=stack)
    page = ada.page
    rows = page.locator("#audit tr")
    shown = page.locator("#audit-shown")
    listed = _queries(ada, "/org/audit")
    expect(shown).to_have_text("Showing every event.")
    expect(page.locator("#audit-dates-hint")).to_contain_text(f"your time zone, {TIME_ZONE}")

    # Who acted: mallory, whoever her events concern.
    page.get_by_role("combobox", name="Who acted").fill("mallory")
    ada.button("Apply").click()
    expect(shown).to_have_text("Showing events with who acted: mallory.")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("Signed in")
    expect(rows.filter(has_text="Security key deleted")).to_have_count(2)
    assert listed[-1]["actor"] == ["mallory"]

    # The 10th of March in Auckland: from 11:00 UTC on the 9th to 11:00 UTC on the 10th.
    page.get_by_label("From", exact=True).fill("2026-03-10")
    page.get_by_label("To", exact=True).fill("2026-03-10")
    ada.button("Apply").click()
    expect(rows).to_have_count(1)
    expect(rows.nth(0)).to_contain_text("Security key deleted")
    expect(rows.nth(0)).to_contain_text("carol")
    expect(shown).to_contain_text("who acted: mallory")
    expect(shown).to_contain_text(f"days in {TIME_ZONE}")
    assert (listed[-1]["since"], listed[-1]["until"]) == (["2026-03-09T11:00:00Z"], ["2026-03-10T11:00:00Z"])

    # Anyone that day: the operator's change at 23:59 is in, mallory's sign-in at midnight is not.
    page.get_by_role("combobox", name="Who acted").fill("")
    page.get_by_role("combobox", name="Who acted").press("Enter")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("Stopped enforcing MFA")
    expect(shown).not_to_contain_text("who acted")
    ada.check_accessibility()

    # A range that ends before it starts is refused beside its field, and the list stays as it was.
    asked = len(listed)
    page.get_by_label("From", exact=True).fill("2026-03-11")
    ada.button("Apply").click()
    expect(ada.alert()).to_have_text("“To” must not be before “From”.")
    expect(page.get_by_label("To", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(rows).to_have_count(2)
    assert len(listed) == asked
    ada.check_accessibility()

    # The export is of what the list shows: the filters last applied, not the refused edit.
    name, text = _download(ada, "Export CSV")
    assert re.fullmatch(rf"keyward-audit-{org}-\d{{4}}-\d{{2}}-\d{{2}}\.csv", name), name
    records = list(csv.reader(io.StringIO(text, newline="")))
    assert records[0] == "at,actor,actor_kind,action,target,user_id,source_ip,user_agent,details".split(",")
    # Oldest first, as many as the list shows; the target a spreadsheet would run is quoted.
    assert [(r[0], r[1], r[3], r[4], r[5]) for r in records[1:]] == [
        ("2026-03-09T11:30:00Z", "mallory", "key.deleted", '\'=HYPERLINK("x")', "carol"),
        ("2026-03-10T10:59:00Z", "operator", "enforcement.disabled", "", ""),
    ]
    expect(page.locator("#audit-export-progress")).to_have_text(f"Saved 2 events as {name}.")
    expect(page.get_by_role("status").filter(has_text="Saved 2 events")).to_have_count(1)

    name, text = _download(ada, "Export NDJSON")
    assert name.endswith(".ndjson")
    events = [json.loads(line) for line in text.splitlines()]
    assert [(e["at"], e["actor"], e["target"]) for e in events] == [
        ("2026-03-09T11:30:00Z", "mallory", '=HYPERLINK("x")'),
        ("2026-03-10T10:59:00Z", "operator", None),
    ]

    # Clear: every event again, ada's own sign-in of today included.
    ada.button("Clear").click()
    expect(shown).to_have_text("Showing every event.")
    expect(page.get_by_label("From", exact=True)).to_have_value("")
    expect(rows).to_have_count(len(SEEDED) + 1)
    expect(rows.nth(0)).to_contain_text("Signed in")
    assert "since" not in listed[-1] and "actor" not in listed[-1]


def test_an_export_stops_at_its_cap_and_can_be_cancelled(open_console: OpenConsole):
    org = unique_org("audit-cap")
    ada = _admin_in_auckland(open_console, org)
    page = ada.page
    progress = page.locator("#audit-export-progress")
    answered: list[str] = []

    # An organization with more events than the console exports at once: each answer holds the
    # API's 5,000 and names a cursor for more.
    def endless(route: Route) -> None:
        answered.append(route.request.url)
        line = json.dumps({"at": "2026-03-09T11:30:00Z", "actor": "mallory", "action": "login"}) + "\n"
        route.fulfill(
            status=200,
            headers={"Content-Type": "application/x-ndjson", "Keyward-Next-Cursor": f"c{len(answered)}"},
            body=line * 5000,
        )

    page.route("**/org/audit/export?*", endless)
    name, text = _download(ada, "Export NDJSON")
    assert len(text.splitlines()) == 100_000 and len(answered) == 20
    assert "next=c19" in answered[-1]
    expect(progress).to_have_text(
        f"Saved the oldest 100,000 events of the range as {name}: the console exports at most 100,000 at a time."
        " Narrow the dates to export the rest."
    )

    # An answer that never comes: the admin cancels, and nothing is saved.
    page.unroute("**/org/audit/export?*")
    page.route("**/org/audit/export?*", lambda route: None)
    downloads: list[object] = []
    page.on("download", lambda download: downloads.append(download))
    ada.button("Export CSV").click()
    expect(progress).to_have_text("Exporting the audit log…")
    expect(ada.button("Export NDJSON")).to_be_disabled()
    ada.button("Cancel export").click()
    expect(progress).to_have_text("Export cancelled: nothing was saved.")
    expect(ada.button("Cancel export")).to_be_hidden()
    expect(ada.button("Export NDJSON")).to_be_enabled()
    expect(ada.button("Export CSV")).to_be_focused()
    expect(ada.alert()).to_be_hidden()
    assert downloads == []
    ada.check_accessibility()
