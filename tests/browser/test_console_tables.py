"""The console's tables in Chromium against the local stack, at 1280 and 390 px: no word broken
mid-way, long IDs shortened with a Copy button that copies all of it, members by key count under
column headers, the key tables' columns, and the member's sessions with "Sign out all other
sessions"."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import OpenConsole
from tests.browser.console import NARROW, unique_org

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 900}

# Every word of every visible table cell, with how many lines it takes: a word on two lines was
# broken mid-way. A word is a run of non-spaces in one text node, measured by a Range over it.
BROKEN_WORDS = """() => {
  const broken = [];
  for (const cell of document.querySelectorAll("td, th")) {
    if (!cell.checkVisibility()) continue;
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (!node.parentElement.checkVisibility() || node.parentElement.closest(".visually-hidden")) continue;
      for (const match of node.textContent.matchAll(/\\S+/g)) {
        const range = document.createRange();
        range.setStart(node, match.index);
        range.setEnd(node, match.index + match[0].length);
        const tops = new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top)));
        if (tops.size > 1) broken.push(`${match[0]} (in “${cell.textContent.trim()}”)`);
      }
    }
  }
  return broken;
}"""


# What sticks out of the page sideways, outside the tables' own scrolling regions.
STICKING_OUT = """() => {
  const width = document.documentElement.clientWidth;
  return [...document.querySelectorAll("body *")]
    .filter((e) => e.checkVisibility() && !e.closest(".table-scroll, .visually-hidden, thead"))
    .filter((e) => e.getBoundingClientRect().right > width + 1)
    .filter((e) => !e.parentElement || e.parentElement.getBoundingClientRect().right <= width + 1)
    .map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className} “${e.textContent.trim().slice(0, 40)}”`);
}"""


def _fits_the_screen(page: Page) -> None:
    assert page.evaluate(STICKING_OUT) == []


def _no_word_broken(page: Page) -> None:
    assert page.evaluate(BROKEN_WORDS) == []


def _headers(page: Page, table: str) -> list[str]:
    return [
        text.strip() for text in page.locator(f"table:has(#{table})").get_by_role("columnheader").all_text_contents()
    ]


def test_tables_keep_words_whole_shorten_ids_and_list_sessions(open_console: OpenConsole):
    org = unique_org("tables")
    lea = open_console()
    lea.sign_in_to_settings(org=org, user="lea")  # no key: listed first
    bob = open_console()
    bob.sign_in_to_settings(org=org, user="bob")
    bob.enable_mfa(key_name="Bob's key")
    ada = open_console(viewport=DESKTOP)
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.enable_mfa(key_name="Ada's desk key")
    ada.add_key(key_name="Ada's spare key")
    page = ada.page

    # Another browser of Ada's, waiting for her security key.
    elsewhere = open_console()
    elsewhere.sign_in(org=org, user="ada", admin=True)
    expect(elsewhere.heading("Use your security key")).to_be_visible()
    other_token = elsewhere.token()
    assert other_token and elsewhere.call("GET", "/me/mfa/keys").status_code == 403

    # Her keys: name, when added, when last used, in words.
    ada.go_to("Organization settings")
    ada.go_to("Personal settings")
    assert _headers(page, "personal-keys") == ["Name", "Added", "Last used", "Actions"]
    desk = ada.key_row("personal-keys", "Ada's desk key")
    expect(desk.get_by_role("cell").nth(1)).to_have_text("Today")
    expect(desk.get_by_role("cell").nth(2)).to_have_text("Never")

    # Her sessions: this one first, then the one waiting for a key; each with its device.
    sessions = page.locator("#sessions tr")
    expect(sessions).to_have_count(2)
    expect(sessions.nth(0)).to_contain_text("This session")
    expect(sessions.nth(0)).to_contain_text("verified with a security key")
    expect(sessions.nth(0)).to_contain_text("Chrome on Linux")
    expect(sessions.nth(1)).to_contain_text("waiting for a security key")
    expect(sessions.nth(1)).not_to_contain_text("This session")
    assert _headers(page, "sessions") == ["Device", "State", "Started", "Last active", "IP address", "Actions"]
    _no_word_broken(page)
    ada.check_accessibility()

    ada.button("Sign out all other sessions").click()
    ada.confirm("Sign out other sessions")
    expect(ada.status()).to_have_text("All your other sessions were signed out.")
    expect(sessions).to_have_count(1)
    expect(sessions.nth(0)).to_contain_text("This session")
    expect(ada.button("Sign out all other sessions")).to_be_hidden()
    assert ada.call("GET", "/me", token=other_token).status_code == 401
    assert ada.call("GET", "/me").status_code == 200

    # The members, by key count with Lea (no key) first, as the caption says.
    ada.go_to("Organization settings")
    ada.open_section("Members")
    members = page.get_by_role("region", name="Members: table")
    expect(members.get_by_role("columnheader", name="Security keys")).to_be_visible()
    expect(members.locator("caption")).to_contain_text("Members without a security key first")
    rows = page.locator("#members tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("lea")
    counts = [rows.nth(i).get_by_role("cell").nth(2).inner_text().strip() for i in range(3)]
    assert counts == ["0", "1", "2"]

    # The organization's keys add the model and the policy's verdict, in words; the key ID is
    # shortened, and its Copy button copies all of it.
    ada.open_section("Security keys")
    assert _headers(page, "org-keys") == [
        "Member",
        "Name",
        "Key ID",
        "Model",
        "Policy",
        "Added",
        "Last used",
        "Actions",
    ]
    key = next(k for k in ada.get("/org/mfa/keys")["keys"] if k["name"] == "Bob's key")
    bobs = ada.key_row("org-keys", "Bob's key")
    expect(bobs).to_contain_text("Unknown model")
    expect(bobs).to_contain_text("accepted by the policy")
    short = bobs.locator(".short-id")
    expect(short).to_have_attribute("title", key["id"])
    assert short.evaluate("(e) => e.getBoundingClientRect().width < e.scrollWidth")  # only the start is shown
    bobs.get_by_role("button", name=f"Copy the key ID {key['id']}").click()
    expect(ada.status()).to_have_text("The key ID was copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == key["id"]
    _no_word_broken(page)
    ada.check_accessibility()

    # Refused the clipboard, the whole ID is shown and selected for Ctrl+C.
    page.evaluate(
        "() => { navigator.clipboard.writeText = () => Promise.reject(new DOMException('no', 'NotAllowedError')); }"
    )
    bobs.get_by_role("button", name=f"Copy the key ID {key['id']}").click()
    expect(ada.status()).to_contain_text("press Ctrl+C")
    assert page.evaluate("String(window.getSelection())") == key["id"]
    page.evaluate("() => { delete navigator.clipboard.writeText; }")

    # On a phone: words stay whole; a table wider than the screen scrolls in its own region.
    page.set_viewport_size(NARROW)
    _no_word_broken(page)
    _fits_the_screen(page)
    ada.open_section("Members")
    expect(members).to_be_visible()
    _no_word_broken(page)
    _fits_the_screen(page)
    ada.go_to("Personal settings")
    expect(sessions.nth(0)).to_contain_text("This session")
    _no_word_broken(page)
    _fits_the_screen(page)
    ada.check_accessibility()
    ada.screenshot("tables-phone")
