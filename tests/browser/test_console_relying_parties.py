"""Organization settings → Relying parties in Chromium against the running local stack: an admin
adds a relying party and copies its secret, shown once; edits its redirect URIs (a refused URI is
marked on the field); replaces its secret and deletes it after confirming — and, long after her
last key check, the console asks for her security key before the change goes through."""

from __future__ import annotations

import hashlib

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenConsole
from tests.browser.console import unique_org
from tests.browser.test_stepup_console import _move_back
from tests.support.stack_client import StackTables

pytestmark = pytest.mark.browser

CALLBACK = "https://expenses.example.com/callback"


def _stored_secret_hash(console, client_id: str) -> str:
    tables = StackTables(console.stack)
    item = tables.client.get_item(
        TableName=StackTables.table("relying-parties"), Key={"client_id": {"S": client_id}}, ConsistentRead=True
    )["Item"]
    return item["secret_hash"]["S"]


def test_an_admin_registers_edits_rotates_and_deletes_a_relying_party(open_console: OpenConsole):
    org = unique_org("relying-parties")
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.enable_mfa(key_name="Ada's key")
    ada.go_to("Organization settings")
    ada.open_section("Relying parties")
    card = ada.page.get_by_role("region", name="Relying parties")
    expect(card.get_by_role("heading", name="Relying parties", level=2)).to_be_visible()
    expect(card.get_by_role("table")).to_contain_text("No relying parties yet.")

    card.get_by_role("textbox", name="Name").fill("Expenses")
    card.get_by_role("textbox", name="Redirect URIs", exact=True).fill(f"{CALLBACK}\nhttp://localhost:5173/cb")
    card.get_by_role("combobox", name="Type").select_option("confidential")
    card.get_by_role("checkbox", name="Authorization code with PKCE (apps, Okta, Keycloak)").check()
    card.get_by_role("button", name="Add relying party").click()
    expect(ada.status()).to_contain_text("Relying party Expenses added. Copy its client secret now")
    secret_box = card.get_by_role("group", name="Client secret of Expenses")
    expect(secret_box).to_contain_text("you will not see it again")
    secret = ada.page.locator("#rp-secret").text_content()
    [client] = ada.get("/org/oidc-clients")["clients"]
    assert secret and _stored_secret_hash(ada, client["client_id"]) == hashlib.sha256(secret.encode()).hexdigest()
    assert client["redirect_uris"] == [CALLBACK, "http://localhost:5173/cb"]
    secret_box.get_by_role("button", name="Copy secret").click()
    expect(ada.status()).to_contain_text("The client secret was copied to the clipboard.")
    assert ada.page.evaluate("navigator.clipboard.readText()") == secret
    ada.check_accessibility()
    ada.screenshot("relying-party-added")
    secret_box.get_by_role("button", name="I have saved it").click()
    expect(ada.page.locator("#rp-secret-box")).to_be_hidden()
    assert secret not in ada.page.content()
    row = card.get_by_role("row").filter(has=ada.page.get_by_role("cell", name="Expenses", exact=True))
    expect(row).to_contain_text(client["client_id"])

    # A wildcard is refused on the field; an exact URI is saved.
    row.get_by_role("button", name="Edit redirect URIs of Expenses").click()
    edit = card.get_by_role("form", name="Redirect URIs of Expenses")
    uris = edit.get_by_role("textbox", name="Redirect URIs")
    uris.fill("https://*.example.com/callback")
    edit.get_by_role("button", name="Save redirect URIs").click()
    expect(ada.alert()).to_contain_text("wildcards are not allowed")
    expect(uris).to_have_attribute("aria-invalid", "true")
    ada.check_accessibility()
    uris.fill("https://expenses.example.com/oidc")
    edit.get_by_role("button", name="Save redirect URIs").click()
    expect(ada.status()).to_contain_text("Redirect URIs of Expenses saved.")
    expect(edit).to_be_hidden()
    assert ada.get(f"/org/oidc-clients/{client['client_id']}")["client"]["redirect_uris"] == [
        "https://expenses.example.com/oidc"
    ]

    # Long after her key check, replacing the secret asks for her key first, then shows the new one.
    _move_back(ada, org, "key_checked_at")
    row.get_by_role("button", name="New secret for Expenses").click()
    ada.confirm("Replace secret")
    expect(ada.dialog()).to_contain_text("Confirm with your security key")
    ada.confirm("Use security key")
    expect(ada.status()).to_contain_text("New client secret for Expenses")
    rotated = ada.page.locator("#rp-secret").text_content()
    assert rotated and rotated != secret
    assert _stored_secret_hash(ada, client["client_id"]) == hashlib.sha256(rotated.encode()).hexdigest()
    card.get_by_role("button", name="I have saved it").click()

    row.get_by_role("button", name="Delete relying party Expenses").click()
    ada.confirm("Delete relying party")
    expect(ada.status()).to_contain_text("Relying party Expenses was deleted.")
    expect(card.get_by_role("table")).to_contain_text("No relying parties yet.")
    assert ada.get("/org/oidc-clients") == {"clients": []}
    actions = [event["action"] for event in ada.get("/org/audit?action=oidc_client.created")["events"]]
    assert actions == ["oidc_client.created"]


def test_a_public_client_is_added_without_a_secret(open_console: OpenConsole):
    org = unique_org("public-client")
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.go_to("Organization settings")
    ada.open_section("Relying parties")
    card = ada.page.get_by_role("region", name="Relying parties")
    card.get_by_role("textbox", name="Name").fill("Dashboard SPA")
    card.get_by_role("textbox", name="Redirect URIs", exact=True).fill("https://dash.example.com/")
    card.get_by_role("combobox", name="Type").select_option("public")
    id_token = card.get_by_role("checkbox", name="ID token posted back (Entra ID external authentication method)")
    expect(id_token).to_be_disabled()
    card.get_by_role("button", name="Add relying party").click()
    expect(ada.status()).to_contain_text("Relying party Dashboard SPA added. It is public: it has no secret.")
    expect(ada.page.locator("#rp-secret-box")).to_be_hidden()
    row = card.get_by_role("row").filter(has=ada.page.get_by_role("cell", name="Dashboard SPA", exact=True))
    expect(row.get_by_role("cell", name="Public", exact=True)).to_be_visible()
    expect(row.get_by_role("button", name="New secret for Dashboard SPA")).to_have_count(0)
