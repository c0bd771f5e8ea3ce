"""Step-up in the console, in Chromium against the running local stack: a sensitive change long
after the last security-key check makes the console name the change, ask for a key already
registered, record the check and carry the change out; a new key touched for the check is told
apart from nothing; without a key to step up with, it says to sign in again. Time passing is played
by moving the session's stored times back in the stack's DynamoDB."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenConsole
from tests.browser.console import Console, unique_org
from tests.support.stack_client import PYNAMODB_TIME_FORMAT, StackTables

pytestmark = pytest.mark.browser

LONG_AGO = timedelta(seconds=900 + 60)


def _session_id(console: Console) -> str:
    token = console.token()
    assert token
    return token.split(".")[3]


def _move_back(console: Console, org: str, attribute: str) -> None:
    """The session's last key check (or login) happened long ago, as far as keyward can tell; a
    login long ago is of a member created before it."""
    moment = datetime.now(UTC) - LONG_AGO
    tables = StackTables(console.stack)
    key = {"session_id": {"S": _session_id(console)}}
    tables.client.update_item(
        TableName=StackTables.table("sessions-v2"),
        Key=key,
        UpdateExpression=f"SET {attribute} = :at",
        ConditionExpression="attribute_exists(session_id)",
        ExpressionAttributeValues={":at": {"S": moment.strftime(PYNAMODB_TIME_FORMAT)}},
    )
    if attribute == "created_at":
        user_id = tables.client.get_item(TableName=StackTables.table("sessions-v2"), Key=key)["Item"]["user_id"]["S"]
        tables.client.update_item(
            TableName=StackTables.table("members"),
            Key={"org_id": {"S": org}, "user_id": {"S": user_id}},
            UpdateExpression="SET created_at = :at",
            ExpressionAttributeValues={":at": {"S": (moment - timedelta(seconds=1)).strftime(PYNAMODB_TIME_FORMAT)}},
        )


def _signed_in_with_two_keys(open_console: OpenConsole, org: str) -> Console:
    lea = open_console()
    lea.sign_in_to_settings(org=org, user="lea")
    lea.enable_mfa(key_name="Blue YubiKey")
    lea.add_key(key_name="Spare key")  # the key in use from now on
    lea.sign_out()
    lea.sign_in(org=org, user="lea")
    lea.button("Use security key").click()
    expect(lea.heading("Personal settings")).to_be_visible()
    return lea


def test_a_sensitive_change_long_after_the_key_check_asks_for_the_key_and_goes_through(open_console: OpenConsole):
    org = unique_org("step-up")
    lea = _signed_in_with_two_keys(open_console, org)
    _move_back(lea, org, "key_checked_at")
    refused = lea.call("DELETE", "/me/mfa")
    assert (refused.status_code, refused.json()["Code"]) == (403, "ReauthenticationRequired")

    lea.button("Delete Blue YubiKey").click()
    lea.confirm("Delete key")
    dialog = lea.page.get_by_role("dialog", name="Confirm with your security key")
    # The change it guards, and the keys that can confirm it.
    expect(dialog).to_have_accessible_description(
        "To delete the security key “Blue YubiKey”, keyward needs a fresh check of a security key already "
        "registered to your account (“Blue YubiKey” or “Spare key”). Nothing has been changed yet."
    )
    lea.screenshot("step-up")
    lea.confirm("Use security key")

    expect(lea.status()).to_have_text("Security key “Blue YubiKey” was deleted.")
    assert [key["name"] for key in lea.get("/me/mfa/keys")["keys"]] == ["Spare key"]
    # The step-up opened a new window: the next sensitive change needs no key.
    assert lea.call("POST", "/me/mfa/keys/options").status_code == 200


def test_cancelling_the_step_up_changes_nothing(open_console: OpenConsole):
    org = unique_org("step-up-cancel")
    lea = _signed_in_with_two_keys(open_console, org)
    _move_back(lea, org, "key_checked_at")

    lea.button("Delete Blue YubiKey").click()
    lea.confirm("Delete key")
    expect(lea.dialog()).to_contain_text("Confirm with your security key")
    lea.confirm("Cancel")

    expect(lea.alert()).to_have_text("This change needs a fresh check of your security key. Nothing was changed.")
    assert [key["name"] for key in lea.get("/me/mfa/keys")["keys"]] == ["Blue YubiKey", "Spare key"]
    assert lea.call("DELETE", "/me/mfa").status_code == 403


def test_a_member_without_keys_is_told_to_sign_in_again(open_console: OpenConsole):
    org = unique_org("step-up-keyless")
    kai = open_console()
    kai.sign_in_to_settings(org=org, user="kai")
    _move_back(kai, org, "created_at")

    kai.page.get_by_role("textbox", name="Key name").fill("Blue YubiKey")
    kai.button("Enable").click()

    expect(kai.alert()).to_have_text("This change needs a recent sign-in. Sign out and sign in again, then retry it.")
    expect(kai.dialog()).to_be_hidden()
    assert kai.get("/me")["mfa"] == {
        "enabled": False,
        "key_count": 0,
        "registration_due_at": None,
        "enrollment_code_required": False,
    }

    kai.sign_out()
    kai.sign_in_to_settings(org=org, user="kai")
    kai.enable_mfa(key_name="Blue YubiKey")
    assert kai.get("/me")["mfa"] == {
        "enabled": True,
        "key_count": 1,
        "registration_due_at": None,
        "enrollment_code_required": False,
    }


def test_a_step_up_while_adding_a_key_asks_for_a_registered_one_and_says_a_new_one_cannot_answer(
    open_console: OpenConsole,
):
    org = unique_org("step-up-new-key")
    lea = open_console()
    lea.sign_in_to_settings(org=org, user="lea")
    lea.enable_mfa(key_name="Blue YubiKey")
    first = lea.keys.first
    registered = lea.keys.credentials(first)
    _move_back(lea, org, "key_checked_at")

    # A new, empty key in hand, Lea adds it: the check first needs one of her registered keys.
    new = lea.keys.plug_in_new()
    lea.page.get_by_role("textbox", name="Key name").fill("Spare key")
    with lea.page.expect_response(lambda answer: answer.url.endswith("/auth/reauth/options")) as asked:
        lea.button("Add key").click()
    allowed = asked.value.json()["publicKey"]["allowCredentials"]
    # The API's options are base64url, DevTools' credential IDs plain base64.
    assert [base64.urlsafe_b64decode(credential["id"] + "==") for credential in allowed] == [
        base64.b64decode(credential["credentialId"]) for credential in registered
    ]
    dialog = lea.page.get_by_role("dialog", name="Confirm with your security key")
    expect(dialog).to_have_accessible_description(
        "To add a security key, keyward needs a fresh check of a security key already registered to your "
        "account (“Blue YubiKey”). Use a key you already have, not the new one you are adding. "
        "Nothing has been changed yet."
    )
    lea.confirm("Use security key")

    # The new key holds no credential the check allows; the browser says only NotAllowedError.
    expect(lea.alert()).to_have_text(
        "No registered security key answered: either the key you used is not one of your registered keys "
        "(a new key can only confirm once it is added), or the check was cancelled or timed out. "
        "Nothing was changed — try again with a key you registered."
    )
    assert [key["name"] for key in lea.get("/me/mfa/keys")["keys"]] == ["Blue YubiKey"]
    assert lea.call("POST", "/me/mfa/keys/options").status_code == 403

    # With the registered key, the check passes, and the new key is then added.
    lea.keys.use(first)
    lea.button("Add key").click()
    lea.confirm("Use security key")
    expect(lea.alert()).to_have_text("This security key is already registered to your account. Use a different key.")
    lea.keys.use(new)
    lea.button("Add key").click()
    expect(lea.status()).to_contain_text("Security key “Spare key” was added")
    expect(lea.dialog()).to_be_hidden()
    assert [key["name"] for key in lea.get("/me/mfa/keys")["keys"]] == ["Blue YubiKey", "Spare key"]


def test_an_admin_change_is_named_from_its_request(open_console: OpenConsole):
    org = unique_org("step-up-admin")
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.enable_mfa(key_name="Desk key")
    ada.go_to("Organization settings")
    ada.open_section("Enrolment passes")
    _move_back(ada, org, "key_checked_at")

    switch = ada.page.get_by_role("switch", name="Require an enrolment pass for a member's first security key")
    switch.click()
    dialog = ada.page.get_by_role("dialog", name="Confirm with your security key")
    expect(dialog).to_have_accessible_description(
        "To change who may register a first security key, keyward needs a fresh check of a security key already "
        "registered to your account (“Desk key”). Nothing has been changed yet."
    )
    ada.confirm("Use security key")
    expect(ada.status()).to_contain_text("now needs an enrolment pass")
    expect(switch).to_be_checked()
    assert ada.get("/org/mfa")["enrollment"] == "pass_required"
