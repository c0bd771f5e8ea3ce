"""Organization settings → Webhooks in Chromium against the running local stack: an admin adds a
webhook and copies its secret, sees the endpoint's deliveries, reads the local outbox, and deletes
the webhook. A local receiver checks every delivery's signature with the secret the page showed."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenConsole
from tests.browser.console import unique_org
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.stack_client import new_client
from tests.support.webhook_receiver import Receiver, running_receiver

pytestmark = pytest.mark.browser


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def test_an_admin_manages_webhooks_and_reads_the_local_outbox(open_console: OpenConsole, stack, receiver: Receiver):
    org = unique_org("webhooks")
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.go_to("Organization settings")
    ada.open_section("Webhooks")
    expect(ada.page.get_by_role("heading", name="Webhooks", level=2)).to_be_visible()
    expect(ada.page.locator("#webhook-list")).to_contain_text("No webhooks yet.")

    ada.page.get_by_role("textbox", name="Endpoint URL").fill(receiver.url)
    ada.page.get_by_role("checkbox", name="All events").uncheck()
    ada.page.get_by_role("checkbox", name="key.registered", exact=True).check()
    ada.button("Add webhook").click()
    expect(ada.status()).to_contain_text(f"Webhook {receiver.url} added")
    secret = ada.page.locator("#webhook-new-secret").text_content()
    assert secret and secret.startswith("whsec_")
    receiver.secret = secret
    [webhook] = ada.get("/org/webhooks")["webhooks"]
    assert (webhook["url"], webhook["events"]) == (receiver.url, ["key.registered"])
    ada.screenshot("webhook-added")
    ada.button("I have saved it").click()
    expect(ada.page.locator("#webhook-new")).to_be_hidden()
    assert secret not in ada.page.content()

    # A member of the organization registers a key: the endpoint gets the signed event, the member a mail.
    keyward = new_client(stack)
    bob = keyward.token(org=org, user="bob")
    assert keyward.add_key(bob, SoftwareAuthenticator(), name="Bob's key").status == 201
    deadline = time.monotonic() + 15
    while not receiver.accepted():
        assert time.monotonic() < deadline, "the webhook received nothing"
        time.sleep(0.2)
    [delivery] = receiver.accepted()
    assert delivery.verified and delivery.payload["data"]["user_id"] == "bob"

    ada.page.get_by_role("button", name=f"Deliveries to {receiver.url}").click()
    deliveries = ada.page.locator("#webhook-delivery-list")
    row = deliveries.get_by_role("row").filter(
        has=ada.page.get_by_role("cell", name="Security key registered", exact=True)
    )
    expect(row.get_by_role("cell", name=re.compile(r"^Delivered — 204 in \d+ ms$"))).to_be_visible()

    outbox = ada.page.get_by_role("region", name="Local outbox local stage")
    expect(outbox).to_be_visible()
    deadline = time.monotonic() + 15
    while f"to bob@{org}.example" not in (ada.page.locator("#outbox-list").text_content() or ""):
        assert time.monotonic() < deadline, "bob's mail is not in the outbox"
        ada.button("Refresh outbox").click()
        time.sleep(0.5)
    mail = ada.page.locator("#outbox-list details").filter(has_text=f"to bob@{org}.example").first
    mail.locator("summary").click()
    expect(mail).to_contain_text("A security key was added to your account")
    expect(mail).to_contain_text("“Bob's key”")
    ada.screenshot("local-outbox")

    ada.page.get_by_role("button", name=f"Delete webhook {receiver.url}").click()
    ada.confirm("Delete webhook")
    expect(ada.status()).to_contain_text(f"Webhook {receiver.url} was deleted.")
    expect(ada.page.locator("#webhook-list")).to_contain_text("No webhooks yet.")
    assert ada.get("/org/webhooks") == {"webhooks": []}
