"""Organization settings → Webhooks: a test event (ping) and an event sent again (redeliver), both
signed and posted by the delivery function from the audit table's stream and listed among the
endpoint's deliveries; and the run of failures an endpoint is in, with since when."""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook

from chalicelib.base import clock
from chalicelib.base.config import settings
from chalicelib.base.models import Delivery, Webhook
from chalicelib.delivery import outbox, webhooks
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.webhook_receiver import Receiver, running_receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


@pytest.fixture
def other_receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox, "BACKOFF_SECONDS", 0.01)


def _endpoint(api: Any, admin: Any, receiver: Receiver, events: list[str]) -> dict[str, Any]:
    created = api.call("POST", "/org/webhooks", token=admin.token, body={"url": receiver.url, "events": events})
    assert created.status == 201, created.body
    receiver.secret = created.body["secret"]
    return dict(created.body["webhook"])


def _deliveries(api: Any, admin: Any, webhook_id: str) -> list[dict[str, Any]]:
    reply = api.call("GET", f"/org/webhooks/{webhook_id}/deliveries", token=admin.token)
    assert reply.status == 200, reply.body
    return list(reply.body["deliveries"])


# --- a test event -------------------------------------------------------------------------------------


def test_a_test_event_is_delivered_now_signed_and_listed_and_goes_to_that_endpoint_only(
    api, audit_stream, receiver, other_receiver
):
    alice = api.login(user="alice", admin=True)
    webhook = _endpoint(api, alice, receiver, ["key.deleted"])  # it does not want webhook.* events
    _endpoint(api, alice, other_receiver, ["*"])
    audit_stream.drain()
    other_before = len(other_receiver.received)

    reply = api.call("POST", f"/org/webhooks/{webhook['id']}/ping", token=alice.token)
    assert reply.status == 202, reply.body
    delivery_id = reply.body["delivery_id"]
    audit_stream.drain()

    [ping] = receiver.accepted()
    assert ping.verified and ping.payload["type"] == "webhook.ping"
    assert ping.payload["data"]["target"] == webhook["id"] and ping.payload["data"]["actor"] == "alice"
    [listed] = _deliveries(api, alice, webhook["id"])
    assert listed["id"] == delivery_id and listed["event_id"] == ping.message_id
    assert (listed["action"], listed["state"], listed["status_code"], listed["attempts"]) == (
        "webhook.ping",
        "delivered",
        204,
        1,
    )
    assert isinstance(listed["duration_ms"], int) and listed["duration_ms"] >= 0
    assert listed["redelivery"] is False
    # The other endpoint, which wants every event, is not sent another's test event.
    assert len(other_receiver.received) == other_before
    [event] = api.call("GET", "/org/audit?action=webhook.ping", token=alice.token).body["events"]
    assert (event["actor"], event["target"], event["details"]) == ("alice", webhook["id"], {"url": receiver.url})


def test_a_disabled_endpoint_may_be_pinged_and_a_failed_ping_does_not_count_against_it(api, audit_stream, receiver):
    alice = api.login(user="alice", admin=True)
    webhook = _endpoint(api, alice, receiver, ["login"])
    assert api.call("PATCH", f"/org/webhooks/{webhook['id']}", token=alice.token, body={"enabled": False}).status == 200
    audit_stream.drain()
    receiver.statuses = [503] * 3
    assert api.call("POST", f"/org/webhooks/{webhook['id']}/ping", token=alice.token).status == 202
    audit_stream.drain()  # three attempts fail; the stream's retry goes through
    stored = Webhook.get("acme", webhook["id"], consistent_read=True)
    assert (stored.state, stored.consecutive_failures, stored.failing_since) == ("disabled", 0, None)
    assert [r.payload["type"] for r in receiver.accepted()][-1] == "webhook.ping"
    assert _deliveries(api, alice, webhook["id"])[0]["state"] == "delivered"


def test_a_test_event_to_a_url_keyward_refuses_fails_as_any_delivery_does(api, audit_stream, receiver, monkeypatch):
    """The name resolved to a public address when the endpoint was made; now it points inside."""
    monkeypatch.setattr(webhooks, "settings", lambda: dataclasses.replace(settings(), stage="prod"))
    answers = {"hooks.example.com": ["93.184.216.34"]}

    def addresses(parts: Any) -> list[str]:
        if parts.hostname not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "unknown")
        return answers[parts.hostname]

    monkeypatch.setattr(webhooks, "_addresses", addresses)
    alice = api.login(user="alice", admin=True)
    port = receiver.url.split(":")[2].split("/")[0]
    created = api.call(
        "POST", "/org/webhooks", token=alice.token, body={"url": f"https://hooks.example.com:{port}/x", "events": ["*"]}
    )
    assert created.status == 201, created.body
    answers["hooks.example.com"] = ["127.0.0.1"]
    reply = api.call("POST", f"/org/webhooks/{created.body['webhook']['id']}/ping", token=alice.token)
    assert reply.status == 202
    audit_stream.drain()

    assert receiver.received == []
    ping = Delivery.get(
        webhooks.channel(org_id="acme", webhook_id=created.body["webhook"]["id"]),
        webhooks.event_key_of(reply.body["delivery_id"]),
        consistent_read=True,
    )
    assert ping.state == "failed" and "private, loopback or link-local" in (ping.detail or "")


# --- an event sent again ------------------------------------------------------------------------------


def test_an_event_sent_again_is_a_new_delivery_with_the_same_id_and_a_fresh_signature(api, audit_stream, receiver):
    alice = api.login(user="alice", admin=True)
    webhook = _endpoint(api, alice, receiver, ["login"])
    api.login(user="bob")
    audit_stream.drain()
    [first] = _deliveries(api, alice, webhook["id"])
    assert (first["action"], first["state"]) == ("login", "delivered")
    time.sleep(1.1)  # webhook-timestamp counts seconds

    reply = api.call("POST", f"/org/webhooks/{webhook['id']}/deliveries/{first['id']}/redeliver", token=alice.token)
    assert reply.status == 202, reply.body
    audit_stream.drain()

    original, again = receiver.accepted()
    assert original.verified and again.verified  # the standardwebhooks library checks both
    assert again.message_id == original.message_id == first["event_id"]
    assert int(again.headers["webhook-timestamp"]) > int(original.headers["webhook-timestamp"])
    assert again.headers["webhook-signature"] != original.headers["webhook-signature"]
    assert again.body == original.body  # the same event
    StandardWebhook(receiver.secret or "").verify(again.body, again.headers)

    newest, oldest = _deliveries(api, alice, webhook["id"])
    assert newest["id"] == reply.body["delivery_id"] != first["id"]
    assert (newest["event_id"], newest["action"], newest["state"], newest["redelivery"]) == (
        first["event_id"],
        "login",
        "delivered",
        True,
    )
    assert oldest == first  # the first delivery's record is as it was
    [asked] = api.call("GET", "/org/audit?action=webhook.redelivered", token=alice.token).body["events"]
    assert asked["actor"] == "alice" and asked["target"] == webhook["id"]
    assert asked["details"] == {
        "url": receiver.url,
        "event_id": first["event_id"],
        "action": "login",
        "delivery_id": first["id"],
    }

    # A redelivery may itself be sent again: it is the same event once more.
    again_reply = api.call(
        "POST", f"/org/webhooks/{webhook['id']}/deliveries/{newest['id']}/redeliver", token=alice.token
    )
    assert again_reply.status == 202
    audit_stream.drain()
    assert [r.message_id for r in receiver.accepted()] == [first["event_id"]] * 3


def test_an_event_sent_again_counts_in_the_endpoints_run_of_failures(api, audit_stream, receiver, monkeypatch):
    monkeypatch.setattr(webhooks, "settings", lambda: dataclasses.replace(settings(), webhook_disable_after_failures=1))
    alice = api.login(user="alice", admin=True)
    webhook = _endpoint(api, alice, receiver, ["login"])
    api.login(user="bob")
    audit_stream.drain()
    [first] = _deliveries(api, alice, webhook["id"])
    receiver.statuses = [500] * 3
    reply = api.call("POST", f"/org/webhooks/{webhook['id']}/deliveries/{first['id']}/redeliver", token=alice.token)
    assert reply.status == 202
    audit_stream.drain()
    # Its three attempts failed: that is a failed delivery in a row, which the limit of one disables.
    stored = Webhook.get("acme", webhook["id"], consistent_read=True)
    assert (stored.state, stored.consecutive_failures) == ("disabled", 1)
    again = next(d for d in _deliveries(api, alice, webhook["id"]) if d["id"] == reply.body["delivery_id"])
    assert (again["state"], again["attempts"]) == ("skipped", 3)
    assert again["detail"] == "the endpoint was disabled after repeated failures"


def test_an_endpoint_in_a_run_of_failures_says_since_when_until_a_delivery_goes_through(
    api, audit_stream, receiver, monkeypatch
):
    monkeypatch.setattr(
        webhooks, "settings", lambda: dataclasses.replace(settings(), webhook_disable_after_failures=99)
    )
    alice = api.login(user="alice", admin=True)
    _endpoint(api, alice, receiver, ["login"])
    audit_stream.drain()
    # Every attempt fails: the stream keeps the record for its retries, two failed deliveries in a row.
    receiver.statuses = [500] * 1000
    first_failure = clock.now()
    api.login(user="bob")
    api.login(user="carol")
    audit_stream.drain()
    [listed] = api.call("GET", "/org/webhooks", token=alice.token).body["webhooks"]
    assert listed["state"] == "enabled" and listed["consecutive_failures"] >= 2
    assert listed["failing_since"] is not None
    assert first_failure - timedelta(seconds=1) <= datetime.fromisoformat(listed["failing_since"]) <= clock.now()
    receiver.statuses = []
    api.login(user="dan")
    audit_stream.drain()
    [listed] = api.call("GET", "/org/webhooks", token=alice.token).body["webhooks"]
    assert (listed["consecutive_failures"], listed["failing_since"]) == (0, None)


# --- who may, and what is refused ---------------------------------------------------------------------


def test_only_admins_send_test_events_and_events_again(api, receiver):
    alice = api.login(user="alice", admin=True)
    webhook = _endpoint(api, alice, receiver, ["*"])
    bob = api.login(user="bob")
    for path in (
        f"/org/webhooks/{webhook['id']}/ping",
        f"/org/webhooks/{webhook['id']}/deliveries/dlv_MjAyNg/redeliver",
    ):
        reply = api.call("POST", path, token=bob.token)
        assert (reply.status, reply.code) == (403, "AdminRequired"), path


def test_an_admin_sends_a_test_event_or_an_event_again_only_after_a_recent_key_check(
    api, audit_stream, receiver, monkeypatch
):
    alice = api.login(user="alice", admin=True)
    assert api.add_key(alice, SoftwareAuthenticator()).status == 201
    webhook = _endpoint(api, alice, receiver, ["*"])
    audit_stream.drain()
    [delivery] = _deliveries(api, alice, webhook["id"])
    later = clock.now() + timedelta(seconds=settings().reauth_window_seconds + 5)
    monkeypatch.setattr(clock, "now", lambda: later)
    for path in (
        f"/org/webhooks/{webhook['id']}/ping",
        f"/org/webhooks/{webhook['id']}/deliveries/{delivery['id']}/redeliver",
    ):
        reply = api.call("POST", path, token=alice.token)
        assert (reply.status, reply.code) == (403, "ReauthenticationRequired"), path
    assert api.call("GET", "/org/audit?action=webhook.ping", token=alice.token).body["events"] == []


def test_unknown_endpoints_and_deliveries_are_not_found(api, audit_stream, receiver, other_receiver):
    alice = api.login(user="alice", admin=True)
    webhook = _endpoint(api, alice, receiver, ["key.deleted"])  # was sent nothing
    other = _endpoint(api, alice, other_receiver, ["*"])
    audit_stream.drain()
    [of_other, *_] = _deliveries(api, alice, other["id"])
    for path in ("/org/webhooks/wh_0123456789abcdef/ping", "/org/webhooks/nonsense/ping"):
        reply = api.call("POST", path, token=alice.token)
        assert (reply.status, reply.code) == (404, "WebhookNotFound"), path
    reply = api.call(
        "POST", f"/org/webhooks/wh_0123456789abcdef/deliveries/{of_other['id']}/redeliver", token=alice.token
    )
    assert (reply.status, reply.code) == (404, "WebhookNotFound")
    for delivery_id in (of_other["id"], "dlv_MjAyNg", "nonsense", "dlv_%FF%FE", "dlv_" + "A" * 300, "dlv_"):
        reply = api.call("POST", f"/org/webhooks/{webhook['id']}/deliveries/{delivery_id}/redeliver", token=alice.token)
        assert (reply.status, reply.code) == (404, "WebhookDeliveryNotFound"), delivery_id
    assert api.call("GET", "/org/audit?action=webhook.redelivered", token=alice.token).body["events"] == []


def test_a_disabled_endpoint_is_sent_no_event_again(api, audit_stream, receiver):
    alice = api.login(user="alice", admin=True)
    webhook = _endpoint(api, alice, receiver, ["*"])
    audit_stream.drain()
    [delivery] = _deliveries(api, alice, webhook["id"])
    assert api.call("PATCH", f"/org/webhooks/{webhook['id']}", token=alice.token, body={"enabled": False}).status == 200
    reply = api.call("POST", f"/org/webhooks/{webhook['id']}/deliveries/{delivery['id']}/redeliver", token=alice.token)
    assert (reply.status, reply.code) == (409, "WebhookDisabled")
    assert api.call("GET", "/org/audit?action=webhook.redelivered", token=alice.token).body["events"] == []
