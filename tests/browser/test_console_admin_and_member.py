"""The console as a demanding admin and member meet it, by role and label, on desktop and on a
390 px phone, partly with the keyboard only: a new backup secret that must not outlive its page,
messages beside what caused them, an organization page that keeps up, a filterable audit log,
ending a member's sessions, a member whose key is gone, and measured contrast."""

from __future__ import annotations

import re
from datetime import UTC

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenConsole
from tests.browser.console import NARROW, Console, unique_org

pytestmark = pytest.mark.browser


def in_view(console: Console, selector: str) -> bool:
    """Whether the element is inside the viewport as it is scrolled now."""
    return console.page.evaluate(
        """(selector) => { const box = document.querySelector(selector).getBoundingClientRect();
            return box.top >= 0 && box.bottom <= innerHeight && box.height > 0; }""",
        selector,
    )


def focused(console: Console) -> str:
    return console.page.evaluate(
        "(() => { const e = document.activeElement;"
        " return e.id || e.getAttribute('aria-label') || e.textContent.trim(); })()"
    )


def test_a_new_backup_secret_is_asked_about_before_leaving_and_gone_after_sign_out(open_console: OpenConsole):
    org = unique_org("secret")
    eve = open_console()
    eve.sign_in_to_settings(org=org, user="eve", admin=True)
    eve.go_to("Organization settings")
    eve.open_section("Backup credentials")
    eve.button("Create backup credentials").click()
    box = eve.page.locator("#backup-new")
    expect(box).to_be_visible()
    key_id = eve.page.locator("#backup-new-key-id").inner_text()
    secret = eve.page.locator("#backup-new-secret").inner_text()

    # Key ID and secret go to the clipboard together, for a password manager.
    eve.button("Copy key ID and secret").click()
    expect(eve.status()).to_have_text("The key ID and secret were copied to the clipboard.")
    assert eve.page.evaluate("navigator.clipboard.readText()") == f"Key ID: {key_id}\nSecret: {secret}"
    # Shown in a monospaced face that draws l, 1 and I differently, and that the machine has.
    font = eve.page.locator("#backup-new-secret").evaluate("(e) => getComputedStyle(e).fontFamily")
    assert font.startswith('"DejaVu Sans Mono"')
    assert eve.page.evaluate("document.fonts.check('16px \"DejaVu Sans Mono\"')")

    # Creating others while it is on screen asks first; cancelling keeps it.
    eve.button("Create backup credentials").click()
    expect(eve.dialog()).to_contain_text("cannot be shown again")
    eve.confirm("Cancel")
    expect(eve.page.locator("#backup-new-secret")).to_have_text(secret)
    assert len(eve.get("/org/backup-credentials")["backup_credentials"]) == 1

    # So does leaving the page.
    eve.page.get_by_role("link", name="Personal settings").click()
    expect(eve.dialog()).to_contain_text("Leave without the new secret?")
    eve.screenshot("leave-with-secret-on-screen")
    eve.confirm("Cancel")
    expect(eve.heading("Organization settings")).to_be_visible()
    expect(box).to_be_visible()

    # And signing out; once out, the secret is nowhere in the page.
    eve.button("Sign out").click()
    eve.confirm("Leave anyway")
    expect(eve.heading("Sign in to keyward")).to_be_visible()
    assert secret not in eve.page.content()
    expect(eve.page).to_have_title("Sign in to keyward · keyward")

    # The next admin on this tab sees no trace of it.
    eve.sign_in_to_settings(org=org, user="otto", admin=True)
    eve.go_to("Organization settings")
    expect(box).to_be_hidden()
    assert secret not in eve.page.content() and key_id in eve.page.content()  # listed, without its secret
    expect(eve.page).to_have_title("Overview · Organization settings · keyward")


def test_a_secret_on_screen_goes_when_another_admin_ends_the_session(open_console: OpenConsole):
    org = unique_org("secret-ended")
    eve = open_console()
    eve.sign_in_to_settings(org=org, user="eve", admin=True)
    eve.go_to("Organization settings")
    eve.open_section("Backup credentials")
    eve.button("Create backup credentials").click()
    expect(eve.page.locator("#backup-new")).to_be_visible()
    secret = eve.page.locator("#backup-new-secret").inner_text()
    assert len(secret) >= 32

    ann = open_console()
    ann.sign_in_to_settings(org=org, user="ann", admin=True)
    ann.go_to("Organization settings")
    ann.open_section("Members")
    ann.button("End the sessions of eve").click()
    expect(ann.dialog()).to_contain_text("End every session of eve?")
    ann.confirm("End sessions")
    expect(ann.status()).to_have_text("Every session of eve was ended.")
    assert ann.call("GET", "/me", token=eve.token()).status_code == 401

    eve.button("Refresh").click()
    expect(eve.heading("Sign in to keyward")).to_be_visible()
    expect(eve.page.get_by_role("alert").filter(has_text="Your session has ended")).to_be_visible()
    assert secret not in eve.page.content()


def test_a_wrong_backup_secret_on_a_phone_is_said_beside_the_field_with_the_keyboard_only(open_console: OpenConsole):
    org = unique_org("phone")
    eve = open_console()
    eve.sign_in_to_settings(org=org, user="eve", admin=True)
    eve.go_to("Organization settings")
    eve.open_section("Backup credentials")
    eve.button("Create backup credentials").click()
    expect(eve.page.locator("#backup-new")).to_be_visible()
    key_id = eve.page.locator("#backup-new-key-id").inner_text()
    eve.button("I have saved it").click()

    phone = open_console(viewport=NARROW)
    phone.open()
    expect(phone.heading("Sign in to keyward")).to_be_visible()
    # The skip link is the first stop of the keyboard.
    phone.page.keyboard.press("Tab")
    expect(phone.page.get_by_role("link", name="Skip to content")).to_be_focused()
    phone.page.keyboard.press("Enter")
    expect(phone.page.locator("main")).to_be_focused()

    phone.page.get_by_role("textbox", name="Key ID").focus()
    phone.page.keyboard.type(key_id)
    phone.page.keyboard.press("Tab")
    secret_field = phone.page.get_by_label("Secret")
    expect(secret_field).to_be_focused()
    phone.page.keyboard.type("not-the-secret")
    phone.page.keyboard.press("Enter")

    expect(phone.alert()).to_have_text("That key ID and secret do not match any backup credentials.")
    expect(secret_field).to_be_focused()
    expect(secret_field).to_have_attribute("aria-invalid", "true")
    expect(secret_field).to_have_accessible_description(re.compile("do not match any backup credentials"))
    assert in_view(phone, "#alert") and in_view(phone, "#backup-secret")
    phone.screenshot("wrong-backup-secret-390")

    # Typing again clears the mark; more failures lock the key ID out, and the page says until when.
    phone.page.keyboard.type("x")
    expect(secret_field).not_to_have_attribute("aria-invalid", "true")
    for _ in range(5):
        phone.page.keyboard.press("Enter")
        expect(phone.button("Sign in with backup credentials")).to_be_enabled()
    expect(phone.alert()).to_contain_text(re.compile(r"Try again after \d{1,2}[:.]\d{2}"))
    expect(secret_field).to_be_focused()


SIGN_ONE_CHECK_SEND_ANOTHER = """async () => {
  const headers = {
    authorization: `Bearer ${sessionStorage.getItem("keyward.session")}`, "content-type": "application/json",
  };
  const ask = async () => (await fetch("auth/mfa/options", { method: "POST", headers })).json();
  const [signed, other] = [await ask(), await ask()];
  const credential = await navigator.credentials.get({
    publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(signed.publicKey),
  });
  const response = await fetch("auth/mfa/verify", {
    method: "POST", headers,
    body: JSON.stringify({ challenge_id: other.challenge_id, credential: credential.toJSON() }),
  });
  return [response.status, (await response.json()).Code];
}"""


def test_the_organization_page_keeps_up_and_its_audit_log_filters(open_console: OpenConsole):
    org = unique_org("watch")
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.enable_mfa(key_name="Ada's key")
    mia = open_console()
    mia.sign_in_to_settings(org=org, user="mia")
    ada.go_to("Organization settings")
    expect(ada.page.locator("#compliance-text")).to_have_text("1 of 2 members has a security key")
    expect(ada.page.locator("#org-updated")).to_contain_text("Updated at")

    # A member registers a key meanwhile: the current nav item brings the page up to date.
    mia.enable_mfa(key_name="Mia's key")
    ada.page.get_by_role("link", name="Organization settings").click()
    expect(ada.page.locator("#compliance-text")).to_have_text("2 of 2 members have a security key")
    expect(ada.status()).to_contain_text("Organization settings updated at")
    ada.open_section("Security keys")
    expect(ada.key_row("org-keys", "Mia's key")).to_have_count(1)

    # Coming back to the tab does too.
    mia.add_key(key_name="Mia's spare")
    ada.page.wait_for_timeout(5_100)  # the page counts as fresh for five seconds
    ada.page.evaluate("window.dispatchEvent(new Event('focus'))")
    expect(ada.key_row("org-keys", "Mia's spare")).to_have_count(1)

    # A failed security key check, recorded with its reason.
    mia.sign_out()
    mia.sign_in(org=org, user="mia")
    expect(mia.heading("Use your security key")).to_be_visible()
    # Her key signs one check, and the answer is sent for another: refused, and recorded.
    refused = mia.page.evaluate(SIGN_ONE_CHECK_SEND_ANOTHER)
    assert refused == [401, "ChallengeMismatch"]

    ada.status().evaluate("(status) => { status.textContent = ''; }")
    ada.button("Refresh").click()
    expect(ada.status()).to_contain_text("Organization settings updated at")
    ada.open_section("Audit log")
    audit = ada.page.locator("#audit")
    expect(audit).to_contain_text("Security key registered")
    ada.page.get_by_role("combobox", name="What happened").select_option(label="Security key registered")
    expect(audit.locator("tr")).to_have_count(3)
    expect(ada.key_row("audit", "“Mia's key” of mia")).to_have_count(1)
    expect(ada.key_row("audit", "127.0.0.1")).to_have_count(3)
    ada.page.get_by_role("combobox", name="About member").select_option("mia")
    expect(audit.locator("tr")).to_have_count(2)
    assert {event["user_id"] for event in ada.get("/org/audit?action=key.registered&user_id=mia")["events"]} == {"mia"}
    ada.page.get_by_role("combobox", name="What happened").select_option(label="Failed the security key check")
    ada.page.get_by_role("combobox", name="About member").select_option("")
    expect(audit.locator("tr")).to_have_count(1)
    expect(audit).to_contain_text("Failed the security key check: the key answered another request")
    ada.page.get_by_role("combobox", name="What happened").select_option(label="Everything")
    ada.page.get_by_role("combobox", name="About member").select_option("")
    expect(audit).to_contain_text("Signed in")
    ada.screenshot("audit-log-filtered")


def test_an_admin_deletes_a_members_key_and_ends_their_sessions_with_the_keyboard_only(open_console: OpenConsole):
    org = unique_org("keyboard")
    lea = open_console()
    lea.sign_in_to_settings(org=org, user="lea")
    lea.enable_mfa(key_name="Lea's key")
    lea_token = lea.token()

    ben = open_console()
    ben.sign_in_to_settings(org=org, user="ben", admin=True)
    ben.go_to("Organization settings")
    ben.open_section("Security keys")
    delete = ben.button("Delete Lea's key of lea")
    delete.focus()
    ben.page.keyboard.press("Enter")
    dialog = ben.dialog()
    expect(dialog).to_contain_text("Delete “Lea's key” of lea?")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    choice = dialog.get_by_role("checkbox", name="End every session of lea too")
    expect(choice).not_to_be_checked()
    ben.page.keyboard.press("Shift+Tab")  # the checkbox comes before the buttons
    expect(choice).to_be_focused()
    ben.page.keyboard.press("Space")
    expect(choice).to_be_checked()
    ben.screenshot("delete-key-and-end-sessions")
    ben.page.keyboard.press("Tab")
    ben.page.keyboard.press("Tab")
    expect(dialog.get_by_role("button", name="Delete key")).to_be_focused()
    ben.page.keyboard.press("Enter")

    expect(ben.status()).to_have_text("Security key “Lea's key” of lea was deleted. Every session of lea was ended.")
    expect(ben.page.get_by_role("heading", name="Security keys", exact=True)).to_be_focused()
    assert ben.get("/org/mfa/keys")["keys"] == []
    assert ben.call("GET", "/me", token=lea_token).status_code == 401
    # The members table and the compliance meter show it at once.
    expect(ben.page.locator("#compliance-text")).to_have_text("0 of 2 members have a security key")

    # "Load more events" lands focus on the first new event, not on the body.
    for _ in range(20):
        assert ben.call("DELETE", "/org/members/lea/sessions").status_code == 204
    ben.open_section("Audit log")
    ben.button("Refresh").click()
    expect(ben.page.locator("#audit tr")).to_have_count(20)
    more = ben.button("Load more events")
    more.focus()
    ben.page.keyboard.press("Enter")
    expect(ben.page.locator("#audit tr")).not_to_have_count(20)
    expect(ben.page.locator("#audit tr:nth-child(21)")).to_be_focused()


def test_an_unexplained_server_error_says_whether_anything_was_saved(open_console: OpenConsole):
    noah = open_console()
    noah.sign_in_to_settings(org=unique_org("crash"), user="noah")
    noah.enable_mfa(key_name="Blue YubiKey")
    # The API crashes on the rename, as a Lambda can: the page cannot know whether it was saved.
    noah.page.route(
        "**/me/mfa/keys/*",
        lambda route: (
            route.fulfill(
                status=500,
                content_type="application/json",
                body='{"Code": "InternalServerError", "Message": "An internal server error occurred."}',
            )
            if route.request.method == "PATCH"
            else route.continue_()
        ),
    )
    noah.button("Rename Blue YubiKey").click()
    noah.page.get_by_role("textbox", name="New name for Blue YubiKey").fill("Keyring key")
    noah.button("Save").click()
    expect(noah.alert()).to_have_text(
        "keyward could not finish that (error 500). The change may or may not have been saved: reload the page to see, "
        "then try again if needed."
    )
    expect(noah.button("Save")).to_be_focused()
    # Cancelling puts the old message away with the form.
    noah.button("Cancel").click()
    expect(noah.alert()).to_be_hidden()
    expect(noah.button("Rename Blue YubiKey")).to_be_focused()


def test_a_member_whose_key_was_deleted_is_not_left_at_the_security_key_prompt(open_console: OpenConsole):
    org = unique_org("stuck")
    ana = open_console()
    ana.sign_in_to_settings(org=org, user="ana")
    ana.enable_mfa(key_name="Ana's key")
    ana.sign_out()
    ana.sign_in(org=org, user="ana")
    expect(ana.heading("Use your security key")).to_be_visible()
    expect(ana.page).to_have_title("Use your security key · keyward")

    # A key that is not registered to her: the browser says no more than it would for a cancelled
    # prompt, and the page says what that can mean, beside the button.
    ana.keys.plug_in_new()
    ana.button("Use security key").click()
    expect(ana.alert()).to_contain_text("the key you used is not registered to you")
    expect(ana.button("Use security key")).to_be_focused()
    assert in_view(ana, "#alert")
    expect(ana.page.get_by_text("Lost your key?", exact=True)).to_be_visible()
    expect(ana.page.locator("#lost-key")).to_have_attribute("open", "")

    # Meanwhile an admin deletes her only key: the next try says so, and what to do.
    tom = open_console()
    tom.sign_in_to_settings(org=org, user="tom", admin=True)
    [key] = tom.get("/org/mfa/keys")["keys"]
    assert tom.call("DELETE", f"/org/members/ana/mfa/keys/{key['id']}").status_code == 204
    ana.button("Use security key").click()
    expect(ana.alert()).to_contain_text("You no longer have a security key")
    expect(ana.alert()).to_contain_text("sign in again")
    ana.screenshot("mfa-key-deleted")
    ana.button("Cancel and sign out").click()
    expect(ana.heading("Sign in to keyward")).to_be_visible()
    # Her next sign-in says why keyward no longer asks for a key.
    ana.sign_in_to_settings(org=org, user="ana")
    expect(ana.status()).to_contain_text("Your security key was deleted since your last sign-in")
    expect(ana.page.locator("#personal-mfa-state")).to_contain_text("MFA is off")
    assert ana.get("/me")["mfa"]["key_count"] == 0


def test_a_member_whose_session_ends_is_told_without_clicking(open_console: OpenConsole):
    org = unique_org("told")
    max_ = open_console()
    max_.page.clock.install()
    max_.sign_in_to_settings(org=org, user="max")

    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.enable_mfa(key_name="Ada's key")
    ada.go_to("Organization settings")
    ada.enforce_mfa()
    expect(ada.page.locator("#invalidation")).to_contain_text("Session clean-up finished")
    # Enforced: the advice for before enforcing is gone, and the page speaks of now.
    expect(ada.page.locator("#enforce-warning")).to_be_hidden()
    expect(ada.page.locator("#enforcement-state")).to_contain_text(
        "Members without a security key must register one at their next sign-in."
    )

    max_.page.clock.run_for(31_000)  # the page checks its session every 30 seconds
    expect(max_.heading("Sign in to keyward")).to_be_visible()
    # The session's item is gone by now; its token still says why it ended.
    expect(
        max_.page.get_by_role("alert").filter(
            has_text="enforces multi-factor authentication, so your session was ended"
        )
    ).to_be_visible()


CONTRAST_PROBE = """() => {
  const rgb = (text) => text.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const luminance = ([r, g, b]) => {
    const channel = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  };
  const ratio = (a, b) => {
    const [hi, lo] = [luminance(rgb(a)), luminance(rgb(b))].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  };
  const card = getComputedStyle(document.querySelector(".card")).backgroundColor;
  const enforce = document.getElementById("enrollment-pass-required");
  const field = document.getElementById("audit-action");
  const textField = document.getElementById("add-key-name");
  return {
    "focus ring on a card": ratio(getComputedStyle(document.activeElement).outlineColor, card),
    "switch track (off) on a card": ratio(getComputedStyle(enforce).backgroundColor, card),
    "switch knob on its track": ratio(
      getComputedStyle(enforce, "::before").backgroundColor, getComputedStyle(enforce).backgroundColor
    ),
    "field border on a card": ratio(getComputedStyle(field).borderTopColor, card),
    "text field border on a card": ratio(getComputedStyle(textField).borderTopColor, card),
  };
}"""


def test_controls_and_the_focus_ring_reach_three_to_one_contrast(open_console: OpenConsole):
    ida = open_console()
    ida.sign_in_to_settings(org=unique_org("contrast"), user="ida", admin=True)
    ida.go_to("Organization settings")
    ida.open_section("Audit log")
    # The focus ring as the keyboard shows it, measured on the control it surrounds.
    ida.page.get_by_role("combobox", name="What happened").focus()
    ida.page.keyboard.press("Shift+Tab")
    ida.page.keyboard.press("Tab")
    expect(ida.page.get_by_role("combobox", name="What happened")).to_be_focused()
    assert ida.page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    ratios = ida.page.evaluate(CONTRAST_PROBE)
    low = {name: round(value, 2) for name, value in ratios.items() if value < 3}
    assert low == {}, ratios
    # In the dark top bar, the ring keyboard users see on its links.
    ida.page.get_by_role("link", name="Personal settings").focus()
    ida.page.keyboard.press("Tab")
    expect(ida.page.get_by_role("link", name="Organization settings")).to_be_focused()
    bar_ring = ida.page.evaluate("getComputedStyle(document.activeElement).outlineColor")
    bar = ida.page.evaluate("getComputedStyle(document.querySelector('.topbar')).backgroundColor")
    assert contrast(bar_ring, bar) >= 3, (bar_ring, bar)


def contrast(first: str, second: str) -> float:
    def luminance(color: str) -> float:
        red, green, blue = (float(part) / 255 for part in re.findall(r"[\d.]+", color)[:3])

        def channel(c: float) -> float:
            return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

        return 0.2126 * channel(red) + 0.7152 * channel(green) + 0.0722 * channel(blue)

    high, low = sorted((luminance(first), luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_audit_log_shows_who_acted_by_the_kind_it_records_not_by_the_name(open_console: OpenConsole, stack):
    """A member whose IdP calls them "operator" (and names them "Operator") is shown by name; the
    operator, keyward itself and backup credentials are shown with a badge of their kind, which no
    member's name can make. The operator's and keyward's events are written to the log as their
    functions write them (the stream and schedule functions are played elsewhere)."""
    from datetime import datetime, timedelta

    from tests.support.stack_client import StackTables, new_client

    org = unique_org("actors")
    keyward = new_client(stack)
    admin = keyward.token(org=org, user="ada", admin=True)
    impostor = keyward.token(org=org, user="operator")
    assert keyward.call("POST", "/auth/logout", token=impostor).status == 204
    created = keyward.call("POST", "/org/backup-credentials", token=admin)
    assert created.status == 201, created
    backup_key = created.body["key_id"]
    assert (
        keyward.call("POST", "/auth/backup-login", body={"key_id": backup_key, "secret": created.body["secret"]}).status
        == 200
    )
    now = datetime.now(UTC)
    for seconds, (actor, kind, action) in enumerate(
        [("operator", "operator", "enforcement.disabled"), ("keyward", "system", "key.model_compromised")]
    ):
        at = now + timedelta(seconds=seconds + 1)
        StackTables(stack).client.put_item(
            TableName=StackTables.table("audit-log"),
            Item={
                "shard_key": {"S": f"{org}#{at.strftime('%Y-%m-%d')}#0"},
                "org_id": {"S": org},
                "event_key": {"S": f"{at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}#0000000{seconds}"},
                "at": {"S": at.strftime("%Y-%m-%dT%H:%M:%S.%f+0000")},
                "actor": {"S": actor},
                "actor_kind": {"S": kind},
                "action": {"S": action},
                "target": {"S": org},
                "ttl": {"N": str(int(at.timestamp()) + 86400)},
            },
        )

    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.go_to("Organization settings")
    ada.open_section("Audit log")

    def who(action: str):
        return ada.page.locator("#audit tr").filter(has_text=action).get_by_role("cell").nth(1)

    expect(who("Signed out")).to_have_text("Operator")
    expect(who("Signed out").locator(".badge")).to_have_count(0)
    expect(who("Stopped enforcing MFA")).to_have_text("Operator")
    expect(who("Stopped enforcing MFA").locator(".badge")).to_have_text("Operator")
    expect(who("Security key model reported compromised").locator(".badge")).to_have_text("keyward")
    expect(who("Signed in with backup credentials")).to_have_text(f"Backup credentials {backup_key}")
    expect(who("Signed in with backup credentials").locator(".badge")).to_have_text("Backup credentials")
