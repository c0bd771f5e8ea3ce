"""The web console in Chromium against the running local stack: the browser's own WebAuthn stack
performs every ceremony with virtual security keys. Each test checks what the page shows and what
the API then reports, uses an organization of its own, and saves a screenshot (see console.SCREENSHOTS)."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenConsole
from tests.browser.console import NARROW, Console, unique_org

pytestmark = pytest.mark.browser


def test_a_member_enables_mfa_and_passes_the_mfa_prompt_at_the_next_sign_in(open_console: OpenConsole):
    org = unique_org("enable")
    mia = open_console()
    mia.sign_in_to_settings(org=org, user="mia")
    expect(mia.page.locator("#personal-mfa-state")).to_contain_text("MFA is off")
    expect(mia.button("Enable")).to_be_visible()
    assert mia.get("/me")["mfa"] == {
        "enabled": False,
        "key_count": 0,
        "registration_due_at": None,
        "enrollment_code_required": False,
    }

    mia.enable_mfa(key_name="Blue YubiKey")
    # Focus stays on the button that did it (now "Add key"), not on the page's body.
    expect(mia.button("Add key")).to_be_focused()

    row = mia.key_row("personal-keys", "Blue YubiKey")
    expect(row).to_have_count(1)
    [key] = mia.get("/me/mfa/keys")["keys"]
    assert key["name"] == "Blue YubiKey"
    expect(row).to_contain_text("Today")  # added
    expect(row).to_contain_text("Never")  # not used for a sign-in yet
    expect(mia.page.locator("#personal-mfa-state")).to_contain_text("MFA is on")
    assert mia.get("/me")["mfa"] == {
        "enabled": True,
        "key_count": 1,
        "registration_due_at": None,
        "enrollment_code_required": False,
    }
    mia.screenshot("enable-mfa")

    old_token = mia.token()
    mia.sign_out()
    assert mia.token() is None
    assert mia.call("GET", "/me", token=old_token).status_code == 401

    mia.sign_in(org=org, user="mia")
    expect(mia.heading("Use your security key")).to_be_visible()
    waiting_token = mia.token()
    assert mia.get("/me")["session"]["state"] == "mfa_required"
    mia.screenshot("mfa-prompt")

    mia.button("Use security key").click()

    expect(mia.heading("Personal settings")).to_be_visible()
    expect(mia.status()).to_contain_text("Security key accepted")
    # The MFA check hands out a new token; the one that waited for it is dead.
    assert mia.token() != waiting_token
    assert mia.call("GET", "/me", token=waiting_token).status_code == 401
    assert mia.get("/me")["session"]["state"] == "active"
    [used] = mia.get("/me/mfa/keys")["keys"]
    assert used["last_used_at"] is not None
    expect(mia.key_row("personal-keys", "Blue YubiKey")).not_to_contain_text("Never")


def test_a_member_adds_a_second_key_renames_it_and_deletes_it_after_confirming(open_console: OpenConsole):
    org = unique_org("keys")
    noah = open_console()
    noah.sign_in_to_settings(org=org, user="noah")
    noah.enable_mfa(key_name="Blue YubiKey")

    # The same key again: the browser refuses it (excludeCredentials), and the page says why.
    noah.page.get_by_role("textbox", name="Key name").fill("Same key")
    noah.button("Add key").click()
    expect(noah.alert()).to_have_text("This security key is already registered to your account. Use a different key.")
    assert [key["name"] for key in noah.get("/me/mfa/keys")["keys"]] == ["Blue YubiKey"]

    noah.add_key(key_name="Spare key")
    assert [key["name"] for key in noah.get("/me/mfa/keys")["keys"]] == ["Blue YubiKey", "Spare key"]
    expect(noah.page.locator("#personal-mfa-state")).to_contain_text("2 security keys")

    noah.button("Rename Spare key").click()
    new_name = noah.page.get_by_role("textbox", name="New name for Spare key")
    expect(new_name).to_be_focused()
    new_name.fill("Keyring key")
    new_name.press("Enter")
    expect(noah.status()).to_have_text("Security key renamed to “Keyring key”.")
    expect(noah.key_row("personal-keys", "Keyring key")).to_have_count(1)
    assert [key["name"] for key in noah.get("/me/mfa/keys")["keys"]] == ["Blue YubiKey", "Keyring key"]

    # Cancelling the confirmation keeps the key.
    noah.button("Delete Keyring key").click()
    expect(noah.dialog()).to_contain_text("Delete “Keyring key”?")
    noah.screenshot("delete-key-confirmation")
    noah.confirm("Cancel")
    expect(noah.button("Delete Keyring key")).to_be_focused()
    assert len(noah.get("/me/mfa/keys")["keys"]) == 2

    noah.button("Delete Keyring key").click()
    noah.confirm("Delete key")

    expect(noah.status()).to_have_text("Security key “Keyring key” was deleted.")
    expect(noah.key_row("personal-keys", "Keyring key")).to_have_count(0)
    assert [key["name"] for key in noah.get("/me/mfa/keys")["keys"]] == ["Blue YubiKey"]
    assert noah.get("/me")["mfa"] == {
        "enabled": True,
        "key_count": 1,
        "registration_due_at": None,
        "enrollment_code_required": False,
    }
    noah.screenshot("manage-keys")


def test_enforcing_mfa_throws_the_members_other_session_out_and_makes_them_register(open_console: OpenConsole):
    org = unique_org("enforce")
    max_ = open_console()
    max_.sign_in_to_settings(org=org, user="max")
    ended_token = max_.token()

    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.enable_mfa(key_name="Ada's key")
    ada.go_to("Organization settings")
    ada.open_section("Roll-out")
    expect(ada.page.locator("#compliance-text")).to_have_text("1 of 2 members has a security key")
    expect(ada.page.locator("#enforcement-state")).to_have_text(
        "MFA is not enforced: members may sign in without a security key."
    )

    ada.start_enforcing()
    expect(ada.dialog()).to_contain_text("Every other session of the organization ends at once")
    # The checklist says what enforcing does to this organization: who lacks a key, and that no
    # backup credentials exist yet.
    expect(ada.dialog()).to_contain_text("1 of 2 members has no security key yet")
    expect(ada.dialog()).to_contain_text("The organization has no backup credentials: create them first")
    ada.screenshot("enforce-confirmation")
    ada.enforce_from_checklist()

    expect(ada.page.locator("#enforcement-state")).to_contain_text("MFA is enforced since")
    expect(ada.page.locator("#invalidation")).to_contain_text("Session clean-up finished: 1 session ended (")
    status = ada.get("/org/mfa")
    assert status["enforced"] is True and status["enforced_by"] == "ada"
    assert status["invalidation"]["state"] == "done" and status["invalidation"]["sessions_ended"] == 1
    # The admin's own session survived.
    assert ada.get("/me")["session"]["state"] == "active"
    ada.screenshot("enforced")

    # Max's next action finds his session gone: back to the sign-in screen, with the reason. The
    # clean-up has deleted his session by now; its ID still tells when it started, so the API
    # still knows the enforcement ended it.
    max_.button("Enable").click()
    expect(max_.heading("Sign in to keyward")).to_be_visible()
    expect(max_.page.locator("#sign-in-reason")).to_contain_text(
        "Your organization now enforces multi-factor authentication, so your session was ended."
    )
    assert max_.token() is None
    refused = max_.call("GET", "/me", token=ended_token)
    assert refused.status_code == 401 and refused.json()["Code"] == "SessionEndedByEnforcement"
    max_.screenshot("session-ended-by-enforcement")

    # Without a key, his next sign-in is for registering one.
    max_.sign_in(org=org, user="max")
    expect(max_.heading("Register your security key")).to_be_visible()
    expect(max_.page.locator("#register-explanation")).to_contain_text(
        f"Your organization ({org}) enforces multi-factor authentication"
    )
    assert max_.get("/me")["session"]["state"] == "registration_required"
    assert max_.call("GET", "/me/mfa/keys").json()["Code"] == "RegistrationRequired"
    max_.screenshot("register-required")

    max_.page.get_by_role("textbox", name="Key name").fill("Max's key")
    max_.button("Register security key").click()

    expect(max_.heading("Personal settings")).to_be_visible()
    expect(max_.key_row("personal-keys", "Max's key")).to_have_count(1)
    me = max_.get("/me")
    assert me["session"]["state"] == "active" and me["mfa"] == {
        "enabled": True,
        "key_count": 1,
        "registration_due_at": None,
        "enrollment_code_required": False,
    }

    ada.page.reload()
    expect(ada.page.locator("#compliance-text")).to_have_text("2 of 2 members have a security key")


def _admin_who_enforced(open_console: OpenConsole, org_name: str) -> Console:
    """An admin holding one key, on Organization settings, who has just enforced MFA."""
    ida = open_console()
    ida.sign_in_to_settings(org=unique_org(org_name), user="ida", admin=True)
    ida.enable_mfa(key_name="Only key")
    ida.go_to("Organization settings")
    ida.enforce_mfa()
    return ida


def test_the_last_key_cannot_be_deleted_while_the_organization_enforces_mfa(open_console: OpenConsole):
    ida = _admin_who_enforced(open_console, "last-key")

    ida.go_to("Personal settings")

    delete = ida.button("Delete Only key")
    expect(delete).to_be_disabled()
    expect(delete).to_have_accessible_description(re.compile("you must keep at least one security key"))
    expect(ida.page.locator("#last-key-reason")).to_be_visible()
    expect(ida.button("Disable MFA")).to_be_disabled()
    expect(ida.page.locator("#disable-mfa-reason")).to_contain_text(
        "cannot be disabled while your organization enforces it"
    )
    ida.screenshot("last-key-enforced")
    # The API holds the same rule for anyone who gets past the page.
    [key] = ida.get("/me/mfa/keys")["keys"]
    refused = ida.call("DELETE", f"/me/mfa/keys/{key['id']}")
    assert (refused.status_code, refused.json()["Code"]) == (409, "LastKeyRequired")
    refused = ida.call("DELETE", "/me/mfa")
    assert (refused.status_code, refused.json()["Code"]) == (409, "LastKeyRequired")

    # With a second key, either may go.
    ida.add_key(key_name="Second key")
    expect(ida.button("Delete Only key")).to_be_enabled()
    expect(ida.page.locator("#last-key-reason")).to_be_hidden()


def test_a_clean_up_that_finishes_after_the_admin_moved_on_does_not_speak_over_the_next_page(open_console: OpenConsole):
    """The organization page's news of the clean-up it watched is for that page: an admin who
    enforced and went on to add a key hears that the key was added, not that sessions ended."""
    ida = _admin_who_enforced(open_console, "moved-on")
    # The page's poll sees the clean-up done, then reloads its lists: hold that reload back.
    held = []
    ida.page.route("**/org/members*", lambda route: held.append(route))
    deadline = time.monotonic() + 15
    while not held:
        assert time.monotonic() < deadline, "the page never reloaded its lists after the clean-up"
        ida.page.wait_for_timeout(100)

    ida.go_to("Personal settings")
    ida.add_key(key_name="Second key")
    # Leaving the page abandoned that reload (console/page.js): an answer now finds nobody waiting.
    held[0].continue_()
    ida.page.unroute("**/org/members*")
    ida.page.wait_for_timeout(500)  # what the page does with the answer, at once

    expect(ida.status()).to_contain_text("Security key “Second key” was added")
    expect(ida.status()).to_be_visible()


def test_an_admin_deletes_a_members_key(open_console: OpenConsole):
    org = unique_org("admin-delete")
    lea = open_console()
    lea.sign_in_to_settings(org=org, user="lea")
    lea.enable_mfa(key_name="Lea's key")

    ben = open_console()
    ben.sign_in_to_settings(org=org, user="ben", admin=True)
    ben.go_to("Organization settings")
    ben.open_section("Security keys")
    row = ben.key_row("org-keys", "Lea's key")
    expect(row).to_contain_text("lea")
    [key] = ben.get("/org/mfa/keys")["keys"]
    expect(row.locator(".key-id")).to_have_text(key["id"])

    ben.button("Delete Lea's key of lea").click()
    expect(ben.dialog()).to_contain_text("Delete “Lea's key” of lea?")
    ben.screenshot("admin-delete-confirmation")
    ben.confirm("Delete key")

    expect(ben.status()).to_have_text("Security key “Lea's key” of lea was deleted.")
    expect(ben.key_row("org-keys", "Lea's key")).to_have_count(0)
    assert ben.get("/org/mfa/keys")["keys"] == []
    [member] = [m for m in ben.get("/org/members")["members"] if m["id"] == "lea"]
    assert member["key_count"] == 0 and member["compliant"] is False
    expect(ben.page.locator("#audit")).to_contain_text("Security key deleted")
    ben.screenshot("admin-deleted-key")

    # Lea's session proved the key she registered: it ended with the key. Signed in again, her
    # page shows MFA off.
    lea.page.reload()
    expect(lea.page.get_by_role("alert")).to_contain_text("Your session has ended")
    lea.sign_in_to_settings(org=org, user="lea")
    expect(lea.page.locator("#personal-mfa-state")).to_contain_text("MFA is off")
    assert lea.get("/me")["mfa"] == {
        "enabled": False,
        "key_count": 0,
        "registration_due_at": None,
        "enrollment_code_required": False,
    }


def test_backup_credentials_are_shown_once_and_sign_an_admin_in(open_console: OpenConsole):
    org = unique_org("backup")
    eve = open_console()
    eve.sign_in_to_settings(org=org, user="eve", admin=True)
    eve.go_to("Organization settings")
    eve.open_section("Backup credentials")

    eve.button("Create backup credentials").click()
    expect(eve.status()).to_contain_text("Copy the secret now")
    key_id = eve.page.locator("#backup-new-key-id").inner_text()
    secret = eve.page.locator("#backup-new-secret").inner_text()
    assert key_id.startswith("bk_") and len(secret) >= 32
    [listed] = eve.get("/org/backup-credentials")["backup_credentials"]
    assert listed["key_id"] == key_id and "secret" not in listed
    expect(eve.page.locator("#backup-list")).to_contain_text(key_id)
    eve.screenshot("backup-credentials-created")

    eve.button("Copy secret").click()
    expect(eve.status()).to_have_text("The secret was copied to the clipboard.")
    assert eve.page.evaluate("navigator.clipboard.readText()") == secret

    eve.button("I have saved it").click()
    expect(eve.page.locator("#backup-new")).to_be_hidden()
    assert secret not in eve.page.content()
    eve.page.reload()
    expect(eve.heading("Organization settings")).to_be_visible()
    assert secret not in eve.page.content()

    # A wrong secret first: refused, in words.
    rescue = open_console()
    rescue.open()
    rescue.page.get_by_role("textbox", name="Key ID").fill(key_id)
    rescue.page.get_by_label("Secret").fill("not-the-secret")
    rescue.button("Sign in with backup credentials").click()
    expect(rescue.alert()).to_have_text("That key ID and secret do not match any backup credentials.")

    rescue.page.get_by_label("Secret").fill(secret)
    rescue.button("Sign in with backup credentials").click()

    # A backup session's work is on the organization's page; what it may not do is disabled, saying why.
    expect(rescue.heading("Organization settings")).to_be_visible()
    me = rescue.get("/me")
    assert me["user"]["admin"] is True and me["session"]["state"] == "active" and me["org"]["id"] == org
    rescue.open_section("Backup credentials")
    create = rescue.button("Create backup credentials")
    expect(create).to_be_disabled()
    expect(create).to_have_accessible_description(re.compile("only an admin signed in through the identity provider"))
    expect(rescue.page.locator("#audit")).to_contain_text("Signed in with backup credentials")
    actions = [event["action"] for event in rescue.get("/org/audit")["events"]]
    assert "backup_login.succeeded" in actions and "backup_login.failed" in actions
    rescue.screenshot("backup-sign-in")
    rescue.go_to("Personal settings")
    expect(rescue.page.locator("#personal-backup-notice")).to_be_visible()
    expect(rescue.page.locator("#personal-mfa-state")).not_to_contain_text("MFA is off")


def test_the_readme_screenshots_of_both_settings_pages(open_console: OpenConsole):
    # The demo organization, as `make run` seeds it: admin alice, member bob.
    bob = open_console()
    bob.open()
    bob.button("Bob — member of acme").click()
    expect(bob.heading("Personal settings")).to_be_visible()
    bob.enable_mfa(key_name="Bob's YubiKey")

    alice = open_console()
    alice.open()
    alice.button("Alice — admin of acme").click()
    expect(alice.heading("Personal settings")).to_be_visible()
    alice.enable_mfa(key_name="YubiKey 5C")
    spare = alice.add_key(key_name="Backup YubiKey")
    # Signed in again with the spare key, so that the list shows a last use.
    alice.sign_out()
    alice.button("Alice — admin of acme").click()
    alice.keys.use(spare)
    alice.button("Use security key").click()
    expect(alice.heading("Personal settings")).to_be_visible()
    expect(alice.key_row("personal-keys", "Backup YubiKey")).not_to_contain_text("Never")
    alice.screenshot("personal-settings")

    alice.go_to("Organization settings")
    alice.open_section("Backup credentials")
    alice.button("Create backup credentials").click()
    alice.button("I have saved it").click()
    alice.enforce_mfa()
    expect(alice.page.locator("#invalidation")).to_contain_text("Session clean-up finished")
    expect(alice.page.locator("#compliance-text")).to_have_text("2 of 2 members have a security key")
    status = alice.get("/org/mfa")
    assert (status["members_compliant"], status["members_total"]) == (2, 2)
    # The audit log names the key of a security key check, and whose it is (hers: "Your"):
    # registered, then used.
    alice.open_section("Audit log")
    used = alice.key_row("audit", "Your “Backup YubiKey”")
    expect(used).to_have_count(2)
    expect(used.first).to_contain_text("Passed the security key check")
    alice.screenshot("organization-settings")


def test_both_settings_pages_fit_a_390_pixel_wide_screen(open_console: OpenConsole):
    org = unique_org("narrow")
    member = open_console(viewport=NARROW)
    member.sign_in_to_settings(org=org, user="a-member-with-a-rather-long-user-id")
    member.enable_mfa(key_name="A security key with a long name")

    admin = open_console(viewport=NARROW)
    admin.sign_in_to_settings(org=org, user="zoe", admin=True)
    admin.enable_mfa(key_name="Zoe's key")
    expect(admin.key_row("personal-keys", "Zoe's key")).to_have_count(1)
    assert admin.page.evaluate("document.documentElement.scrollWidth") <= NARROW["width"]
    assert sticking_out(admin) == []
    admin.screenshot("personal-settings-390")

    admin.go_to("Organization settings")
    admin.open_section("Backup credentials")
    admin.button("Create backup credentials").click()
    expect(admin.status()).to_contain_text("Copy the secret now")
    admin.open_section("Security keys")
    expect(admin.key_row("org-keys", "A security key with a long name")).to_have_count(1)
    assert admin.page.evaluate("document.documentElement.scrollWidth") <= NARROW["width"]
    assert sticking_out(admin) == []
    admin.screenshot("organization-settings-390")


def sticking_out(console: Console) -> list[str]:
    """Visible elements that reach past the right edge of the viewport, even where the page clips them
    (table headers that narrow screens leave to screen readers only are not shown at all)."""
    return console.page.evaluate(
        """() => [...document.querySelectorAll("body *")]
            .filter((element) => element.getClientRects().length && !element.closest("thead, .visually-hidden"))
            .filter((element) => element.getBoundingClientRect().right > innerWidth + 0.5)
            .map((element) => `${element.tagName.toLowerCase()}#${element.id}.${element.className}: `
                + element.textContent.slice(0, 40))"""
    )
