"""Organization settings → Webhooks in Chromium against the running local stack: an endpoint keyward
disabled after it kept failing is enabled again with its Enable button, keeps its secret, and
receives the events from then on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenConsole
from tests.browser.console import unique_org
from tests.support.stack_client import PYNAMODB_TIME_FORMAT, StackTables, new_client
from tests.support.webhook_receiver import Receiver, running_receiver

pytestmark = pytest.mark.browser


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def _disabled_by_keyward(db: StackTables, org: str, webhook_id: str) -> None:
    """The endpoint as keyward leaves it after its deliveries failed ten times in a row."""
    at = datetime.now(UTC) - timedelta(minutes=5)
    db.client.update_item(
        TableName=db.table("webhooks"),
        Key={"org_id": {"S": org}, "webhook_id": {"S": webhook_id}},
        UpdateExpression="SET #state = :disabled, consecutive_failures = :failures, disabled_at = :at",
        ExpressionAttributeNames={"#state": "state"},
        ExpressionAttributeValues={
            ":disabled": {"S": "disabled"},
            ":failures": {"N": "10"},
            ":at": {"S": at.strftime(PYNAMODB_TIME_FORMAT)},
        },
    )


def test_an_admin_enables_a_webhook_keyward_disabled_and_it_receives_events_again(
    open_console: OpenConsole, stack, receiver: Receiver
):
    org = unique_org("webhook-enable")
    ada = open_console()
    ada.sign_in_to_settings(org=org, user="ada", admin=True)
    ada.go_to("Organization settings")
    ada.open_section("Webhooks")
    ada.page.get_by_role("textbox", name="Endpoint URL").fill(receiver.url)
    ada.page.get_by_role("checkbox", name="All events").uncheck()
    ada.page.get_by_role("checkbox", name="login", exact=True).check()
    ada.button("Add webhook").click()
    expect(ada.status()).to_contain_text(f"Webhook {receiver.url} added")
    receiver.secret = ada.page.locator("#webhook-new-secret").text_content()
    ada.button("I have saved it").click()
    [webhook] = ada.get("/org/webhooks")["webhooks"]
    enable = ada.page.get_by_role("button", name=f"Enable webhook {receiver.url}")
    expect(enable).to_have_count(0)  # an enabled endpoint has nothing to enable

    _disabled_by_keyward(StackTables(stack), org, webhook["id"])
    ada.go_to("Personal settings")
    ada.go_to("Organization settings")
    ada.open_section("Webhooks")
    row = ada.page.locator("#webhook-list").get_by_role("row").filter(has_text=receiver.url)
    expect(row.get_by_role("cell").filter(has_text="Disabled")).to_contain_text("after 10 failed deliveries in a row")
    ada.check_accessibility()
    ada.screenshot("webhook-disabled")

    enable.click()
    expect(ada.status()).to_contain_text(f"Webhook {receiver.url} was enabled again")
    expect(row.get_by_role("cell", name="Enabled", exact=True)).to_be_visible()
    expect(enable).to_have_count(0)
    expect(ada.page.get_by_role("button", name=f"Deliveries to {receiver.url}")).to_be_focused()
    [stored] = ada.get("/org/webhooks")["webhooks"]
    assert (stored["state"], stored["consecutive_failures"], stored["disabled_at"]) == ("enabled", 0, None)

    # A member signs in: the endpoint gets the event, signed with the secret the page showed at first.
    new_client(stack).token(org=org, user="bob")
    deadline = time.monotonic() + 15
    while not receiver.accepted():
        assert time.monotonic() < deadline, "the webhook received nothing after it was enabled"
        time.sleep(0.2)
    [delivery] = receiver.accepted()
    assert delivery.verified and delivery.payload["data"]["user_id"] == "bob"
    ada.check_accessibility()
