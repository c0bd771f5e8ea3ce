"""Organization settings → Webhooks in Chromium against the running local stack: an admin chooses
an endpoint's events by checkbox, copies its secret, sends it a test event and sees it delivered
in words, sends a member's event again, and sees the endpoint failing next to "Enabled". A local
receiver checks every delivery's signature with the secret the page copied."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenConsole
from tests.browser.console import unique_org
from tests.support.stack_client import new_client
from tests.support.webhook_receiver import Receiver, running_receiver

pytestmark = pytest.mark.browser


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def _wait_for(receiver: Receiver, count: int) -> None:
    deadline = time.monotonic() + 20
    while len(receiver.accepted()) < count:
        assert time.monotonic() < deadline, f"the webhook received {len(receiver.accepted())} of {count} deliveries"
        time.sleep(0.2)


def test_an_admin_tests_redelivers_and_sees_a_failing_webhook(open_console: OpenConsole, stack, receiver: Receiver):
    org = unique_org("webhook-deliveries")
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.go_to("Organization settings")
    ada.open_section("Webhooks")
    page = ada.page

    # The events, by checkbox: each says what it means; "All events" greys the others out.
    events = page.get_by_role("group", name="Events")
    every = events.get_by_role("checkbox", name="All events")
    login = events.get_by_role("checkbox", name="login", exact=True)
    expect(every).to_be_checked()
    expect(login).to_be_disabled()
    expect(login).to_have_accessible_description("A member signed in through the IdP")
    every.uncheck()
    expect(login).to_be_enabled()
    login.check()
    page.get_by_role("textbox", name="Endpoint URL").fill(receiver.url)
    ada.button("Add webhook").click()
    expect(ada.status()).to_contain_text(f"Webhook {receiver.url} added")
    [webhook] = ada.get("/org/webhooks")["webhooks"]
    assert webhook["events"] == ["login"]

    # Where the browser refuses the clipboard, the secret is selected for the admin to copy.
    page.evaluate(
        "() => { navigator.clipboard.writeText = () => Promise.reject(new DOMException('no', 'NotAllowedError')); }"
    )
    ada.button("Copy secret").click()
    expect(ada.status()).to_contain_text("the signing secret is selected, press Ctrl+C")
    assert page.evaluate("window.getSelection().toString()") == page.locator("#webhook-new-secret").text_content()
    expect(page.locator("#webhook-copy-secret")).to_have_text("Copy secret")
    page.evaluate("() => { delete navigator.clipboard.writeText; }")  # the browser's own again

    # The secret, copied to the clipboard.
    ada.button("Copy secret").click()
    expect(page.locator("#webhook-copy-secret")).to_have_text("Copied")
    expect(ada.status()).to_contain_text("The signing secret was copied to the clipboard.")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("whsec_") and copied == page.locator("#webhook-new-secret").text_content()
    receiver.secret = copied
    ada.screenshot("webhook-secret-copied")
    ada.button("I have saved it").click()

    # A test event: delivered now, said in words, listed.
    page.get_by_role("button", name=f"Send test event to {receiver.url}").click()
    expect(ada.status()).to_contain_text(
        re.compile(rf"Test event to {re.escape(receiver.url)}: Delivered — 204 in \d+ ms\.")
    )
    [ping] = receiver.accepted()
    assert ping.verified and ping.payload["type"] == "webhook.ping"
    deliveries = page.locator("#webhook-delivery-list")
    test_row = deliveries.get_by_role("row").filter(has=page.get_by_role("cell", name="Test event", exact=True))
    expect(test_row.get_by_role("cell", name=re.compile(r"^Delivered — 204 in \d+ ms$"))).to_be_visible()

    # A member signs in; the admin sends that event again: the same event ID, signed anew.
    new_client(stack).token(org=org, user="bob")
    _wait_for(receiver, 2)
    page.get_by_role("button", name=f"Deliveries to {receiver.url}").click()
    login_row = deliveries.get_by_role("row").filter(has=page.get_by_role("cell", name="Signed in", exact=True))
    expect(login_row.get_by_role("cell", name=re.compile(r"^Delivered — 204 in \d+ ms$"))).to_be_visible()
    login_row.get_by_role("button", name=re.compile(r"^Redeliver Signed in of ")).click()
    expect(ada.status()).to_contain_text(
        re.compile(rf"Signed in sent again to {re.escape(receiver.url)}: Delivered — 204 in \d+ ms\.")
    )
    _, first, again = receiver.accepted()
    assert first.verified and again.verified and again.message_id == first.message_id
    assert again.payload["data"]["user_id"] == "bob"
    expect(deliveries.get_by_role("cell", name="Signed in (sent again)", exact=True)).to_be_visible()
    expect(page.locator("#webhook-deliveries-title")).to_be_focused()
    ada.screenshot("webhook-deliveries")

    # The endpoint starts failing: the page says so next to "Enabled", and how long it has lasted.
    receiver.statuses = [500] * 1000
    login_row.get_by_role("button", name=re.compile(r"^Redeliver Signed in of ")).click()
    expect(ada.status()).to_contain_text(
        re.compile(
            r"Signed in sent again to .*: Failed — the endpoint answered HTTP 500 in \d+ ms; keyward tries again"
        )
    )
    deadline = time.monotonic() + 20
    while not ada.get("/org/webhooks")["webhooks"][0]["consecutive_failures"]:
        assert time.monotonic() < deadline, "the failed delivery was not counted"
        time.sleep(0.2)
    ada.go_to("Personal settings")
    ada.go_to("Organization settings")
    ada.open_section("Webhooks")
    state = page.locator("#webhook-list").get_by_role("row").filter(has_text=receiver.url).get_by_role("cell").nth(2)
    expect(state).to_contain_text(
        re.compile(r"Enabled — failing: (1 delivery failed|\d+ deliveries in a row failed) since")
    )
    ada.screenshot("webhook-failing")
