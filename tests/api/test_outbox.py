"""The outbox: audit events delivered from the audit table's stream to mail (SES on moto), the
EventBridge bus (moto) and signed webhooks (a local receiver) — once per event and channel, with
retries, a dead-letter queue, and no event lost or duplicated when a channel fails."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from chalicelib.base.config import settings
from chalicelib.base.models import AuditEvent, Delivery, Webhook
from chalicelib.delivery import notifications, outbox, webhooks
from tests.support.audit_log import logged_events
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.keyward_client import USER_AGENT
from tests.support.webhook_receiver import Receiver, running_receiver


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox, "BACKOFF_SECONDS", 0.01)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def _events_of(receiver: Receiver) -> list[dict[str, Any]]:
    return [r.payload for r in receiver.accepted()]


def _mail_to(sent_mail: list[Any], address: str) -> list[Any]:
    import email

    found = []
    for message in sent_mail:
        if any(address in destination for destination in message.destinations):
            found.append(email.message_from_string(message.raw_data))
    return found


def _parts(message: Any) -> dict[str, str]:
    return {
        part.get_content_type(): part.get_payload(decode=True).decode()
        for part in message.walk()
        if not part.is_multipart()
    }


def _create_webhook(api, admin, url: str, events: list[str] | None = None) -> dict[str, Any]:
    reply = api.call("POST", "/org/webhooks", token=admin.token, body={"url": url, "events": events or ["*"]})
    assert reply.status == 201, reply.body
    return reply.body


def _deliveries(channel: str) -> list[Delivery]:
    return list(Delivery.query(channel, consistent_read=True))


# --- mail ---------------------------------------------------------------------------------------


def test_a_member_is_mailed_when_a_key_is_added_with_what_when_where_and_which_key(api, audit_stream, sent_mail):
    bob = api.login(user="bob")
    audit_stream.drain()  # the login: not mailed
    assert api.add_key(bob, name="Blue YubiKey").status == 201
    audit_stream.drain()

    [mail] = _mail_to(sent_mail, "bob@acme.example")
    assert mail["Subject"] == "keyward: A security key was added to your account"
    assert "notifications@keyward.localhost" in mail["From"]
    parts = _parts(mail)
    text, page = parts["text/plain"], parts["text/html"]
    [event] = [e for e in logged_events("acme") if e.action == "key.registered"]
    for fact in (
        "“Blue YubiKey”",
        event.target,
        USER_AGENT,
        event.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "If this was not you",
        mail["X-Keyward-Event"],
    ):
        assert fact in text, fact
    assert "Blue YubiKey" in page and "<table>" in page
    assert bob.token not in text and bob.token not in page
    assert [d.state for d in _deliveries("mail#acme#bob")] == ["delivered"]


def _key_deleted_mail(sent_mail: list[Any], address: str) -> tuple[str, str]:
    [mail] = [
        m
        for m in _mail_to(sent_mail, address)
        if m["Subject"] == "keyward: A security key was removed from your account"
    ]
    parts = _parts(mail)
    return parts["text/plain"], parts["text/html"]


def test_a_member_deleting_their_key_is_mailed_the_keys_name_and_id(api, audit_stream, sent_mail):
    bob = api.login(user="bob")
    assert api.add_key(bob, name="Blue YubiKey").status == 201
    kept = api.add_key(bob, name="Spare key")
    assert kept.status == 201
    key_id = next(
        k["id"] for k in api.call("GET", "/me/mfa/keys", token=bob.token).body["keys"] if k["name"] == "Blue YubiKey"
    )
    assert api.call("DELETE", f"/me/mfa/keys/{key_id}", token=bob.token).status == 204
    audit_stream.drain()

    text, page = _key_deleted_mail(sent_mail, "bob@acme.example")
    assert "The security key “Blue YubiKey” was removed from your account by bob." in text
    assert f"Security key: Blue YubiKey ({key_id})" in text
    assert "Spare key" not in text
    assert "Blue YubiKey" in page and key_id in page
    [event] = [e for e in logged_events("acme") if e.action == "key.deleted"]
    assert (event.target, event.details.as_dict()) == (key_id, {"by": "self", "name": "Blue YubiKey"})


def test_an_admin_deleting_a_members_key_is_named_in_the_members_mail_with_the_key(api, audit_stream, sent_mail):
    bob = api.login(user="bob")
    assert api.add_key(bob, name="Green key").status == 201
    [key] = api.call("GET", "/me/mfa/keys", token=bob.token).body["keys"]
    alice = api.login(user="alice", admin=True)
    assert api.call("DELETE", f"/org/members/bob/mfa/keys/{key['id']}", token=alice.token).status == 204
    audit_stream.drain()

    text, page = _key_deleted_mail(sent_mail, "bob@acme.example")
    assert "The security key “Green key” was removed from your account by alice, an admin." in text
    assert f"Security key: Green key ({key['id']})" in text
    assert "Green key" in page and "alice, an admin" in page
    assert _mail_to(sent_mail, "alice@acme.example") == []
    [event] = api.call("GET", "/org/audit?action=key.deleted", token=alice.token).body["events"]
    assert (event["target"], event["details"]) == (key["id"], {"by": "admin", "name": "Green key"})


def test_disabling_mfa_mails_the_member_every_removed_keys_name(api, audit_stream, sent_mail):
    bob = api.login(user="bob")
    for name in ("Blue key", "Red key"):
        assert api.add_key(bob, name=name).status == 201
    keys = {k["name"]: k["id"] for k in api.call("GET", "/me/mfa/keys", token=bob.token).body["keys"]}
    assert api.call("DELETE", "/me/mfa", token=bob.token).status == 204
    audit_stream.drain()

    [mail] = [
        m
        for m in _mail_to(sent_mail, "bob@acme.example")
        if m["Subject"] == "keyward: Multi-factor authentication was turned off for your account"
    ]
    text = _parts(mail)["text/plain"]
    assert f"Security keys: Blue key ({keys['Blue key']}), Red key ({keys['Red key']})" in text
    [event] = [e for e in logged_events("acme") if e.action == "mfa.disabled"]
    assert event.details.as_dict()["keys"] == [
        {"id": keys["Blue key"], "name": "Blue key"},
        {"id": keys["Red key"], "name": "Red key"},
    ]


def test_offboarding_records_the_removed_keys_by_name(api):
    bob = api.login(user="bob")
    assert api.add_key(bob, name="Blue key").status == 201
    [key] = api.call("GET", "/me/mfa/keys", token=bob.token).body["keys"]
    alice = api.login(user="alice", admin=True)
    assert api.call("DELETE", "/org/members/bob", token=alice.token).status == 204

    [event] = api.call("GET", "/org/audit?action=member.offboarded", token=alice.token).body["events"]
    assert (event["details"]["keys_deleted"], event["details"]["keys"]) == (1, [{"id": key["id"], "name": "Blue key"}])


def test_backup_credentials_are_announced_to_every_admin_without_the_secret(api, audit_stream, sent_mail):
    alice = api.login(user="alice", admin=True)
    api.login(user="carol", admin=True)
    api.login(user="bob")
    created = api.call("POST", "/org/backup-credentials", token=alice.token)
    assert created.status == 201
    audit_stream.drain()

    subjects = {
        address: [m["Subject"] for m in _mail_to(sent_mail, address)]
        for address in ("alice@acme.example", "carol@acme.example", "bob@acme.example")
    }
    assert subjects == {
        "alice@acme.example": ["keyward: Backup credentials were created"],
        "carol@acme.example": ["keyward: Backup credentials were created"],
        "bob@acme.example": [],
    }
    for message in sent_mail:
        assert created.body["secret"] not in message.raw_data


def test_a_member_without_an_email_address_is_skipped_and_the_delivery_says_so(api, audit_stream, sent_mail):
    reply = api.login_reply(user="dan", email="")
    assert reply.status == 200
    from tests.support.keyward_client import Member

    dan = Member(org="acme", user="dan", token=reply.body["token"], state=reply.body["state"])
    assert api.add_key(dan).status == 201
    audit_stream.drain()

    assert sent_mail == []
    [delivery] = _deliveries("mail#acme#dan")
    assert (delivery.state, delivery.detail) == ("skipped", "the member has no email address")


def test_repeated_failed_mfa_checks_mail_the_member_once_per_run(api, audit_stream, sent_mail):
    key = SoftwareAuthenticator()
    bob = api.login(user="bob")
    assert api.add_key(bob, key).status == 201
    bob = api.login(user="bob")
    for _ in range(notifications.REPEATED_FAILURES + 1):
        options = api.mfa_options(bob).body
        phished = key.authenticate(options["publicKey"], origin="https://keyward.evil.example")
        assert api.mfa_verify(bob, options["challenge_id"], phished).status == 401
    audit_stream.drain()

    subjects = [m["Subject"] for m in _mail_to(sent_mail, "bob@acme.example")]
    assert subjects.count("keyward: Repeated failed security key checks on your account") == 1


def test_a_stage_without_a_sender_sends_no_mail(api, audit_stream, sent_mail, monkeypatch):
    monkeypatch.setattr(outbox, "settings", lambda: dataclasses.replace(settings(), mail_from=""))
    bob = api.login(user="bob")
    assert api.add_key(bob).status == 201
    audit_stream.drain()
    assert sent_mail == [] and _deliveries("mail#acme#bob") == []


# --- EventBridge --------------------------------------------------------------------------------


@pytest.fixture
def bus_queue() -> Iterator[Any]:
    """An SQS queue that a rule on keyward's bus feeds with every keyward event."""
    endpoint = settings().aws_endpoint
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
    events = boto3.client("events", endpoint_url=endpoint, region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName="siem")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="to-siem", EventBusName=settings().event_bus, EventPattern=json.dumps({"source": ["keyward"]}))
    events.put_targets(Rule="to-siem", EventBusName=settings().event_bus, Targets=[{"Id": "siem", "Arn": arn}])

    def received() -> list[dict[str, Any]]:
        found = []
        while True:
            messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return found
            for message in messages:
                found.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    try:
        yield received
    finally:
        events.remove_targets(Rule="to-siem", EventBusName=settings().event_bus, Ids=["siem"])
        events.delete_rule(Name="to-siem", EventBusName=settings().event_bus)
        sqs.delete_queue(QueueUrl=queue_url)


def test_every_event_goes_to_the_bus_with_the_action_as_detail_type_and_the_org_in_the_detail(
    api, audit_stream, bus_queue
):
    bob = api.login(user="bob")
    assert api.add_key(bob).status == 201
    audit_stream.drain()

    events = bus_queue()
    assert sorted(e["detail-type"] for e in events) == ["key.registered", "login"]
    for event in events:
        assert event["source"] == "keyward"
        assert event["detail"]["org_id"] == "acme" and event["detail"]["id"].startswith("evt_")
        assert event["detail"]["action"] == event["detail-type"]


# --- webhooks -------------------------------------------------------------------------------------


def test_webhooks_receive_signed_events_exactly_once_across_redeliveries(api, audit_stream, receiver):
    alice = api.login(user="alice", admin=True)
    created = _create_webhook(api, alice, receiver.url, ["key.registered", "webhook.created"])
    receiver.secret = created["secret"]
    assert created["secret"].startswith("whsec_")
    listed = api.call("GET", "/org/webhooks", token=alice.token).body["webhooks"]
    assert [w["id"] for w in listed] == [created["webhook"]["id"]] and "secret" not in json.dumps(listed)

    bob = api.login(user="bob")
    assert api.add_key(bob).status == 201
    records: list[dict[str, Any]] = []
    audit_stream._handler, deliver = (
        lambda event, context: (records.extend(event["Records"]), deliver(event, context))[1],
        audit_stream._handler,
    )
    audit_stream.drain()
    # The stream hands the same records over again (a retried batch): nothing is posted twice.
    from devstack.stream import InvocationContext

    assert deliver({"Records": records}, InvocationContext(seconds=60)) == {"batchItemFailures": []}

    received = receiver.accepted()
    assert [r.payload["type"] for r in received] == ["webhook.created", "key.registered"]
    assert all(r.verified for r in received)
    assert len({r.message_id for r in received}) == 2
    assert received[1].payload["data"]["user_id"] == "bob" and received[1].payload["data"]["org_id"] == "acme"

    deliveries = api.call("GET", f"/org/webhooks/{created['webhook']['id']}/deliveries", token=alice.token)
    assert deliveries.status == 200
    assert [(d["action"], d["state"], d["attempts"], d["status_code"]) for d in deliveries.body["deliveries"]] == [
        ("key.registered", "delivered", 1, 204),
        ("webhook.created", "delivered", 1, 204),
    ]


def test_a_forged_or_replayed_signature_does_not_verify(api, audit_stream, receiver):
    """The receiver's check is real: another secret, or a changed body, fails it."""
    from standardwebhooks.webhooks import Webhook as Verifier
    from standardwebhooks.webhooks import WebhookVerificationError

    alice = api.login(user="alice", admin=True)
    created = _create_webhook(api, alice, receiver.url)
    receiver.secret = created["secret"]
    audit_stream.drain()
    [delivery] = receiver.accepted()
    other = "whsec_" + "A" * 43 + "="
    with pytest.raises(WebhookVerificationError):
        Verifier(other).verify(delivery.body, delivery.headers)
    with pytest.raises(WebhookVerificationError):
        Verifier(created["secret"]).verify(delivery.body.replace(b"alice", b"mallory"), delivery.headers)


def test_a_failing_endpoint_is_retried_with_backoff_and_a_flaky_one_gets_each_event_once(api, audit_stream, receiver):
    alice = api.login(user="alice", admin=True)
    created = _create_webhook(api, alice, receiver.url)
    receiver.secret = created["secret"]
    receiver.statuses = [500, 503]  # two failures, then it recovers
    audit_stream.drain()

    assert [r.status for r in receiver.received] == [500, 503, 204]
    assert len(set(r.message_id for r in receiver.received)) == 1
    [delivery] = _deliveries(webhooks.channel(org_id="acme", webhook_id=created["webhook"]["id"]))
    assert (delivery.state, delivery.attempts) == ("delivered", 3)


def test_an_endpoint_that_keeps_failing_is_disabled_and_the_admins_are_told(
    api, audit_stream, receiver, sent_mail, monkeypatch
):
    monkeypatch.setattr(webhooks, "settings", lambda: dataclasses.replace(settings(), webhook_disable_after_failures=2))
    alice = api.login(user="alice", admin=True)
    created = _create_webhook(api, alice, receiver.url)
    webhook_id = created["webhook"]["id"]
    receiver.statuses = [500] * 100
    audit_stream.drain()

    stored = Webhook.get("acme", webhook_id, consistent_read=True)
    assert stored.state == "disabled" and stored.disabled_at is not None
    actions = [e.action for e in logged_events("acme")]
    assert "webhook.disabled" in actions
    assert [m["Subject"] for m in _mail_to(sent_mail, "alice@acme.example")] == [
        "keyward: A webhook was disabled after failing repeatedly"
    ]
    # Nothing more is posted to it.
    posted = len(receiver.received)
    api.login(user="bob")
    audit_stream.drain()
    assert len(receiver.received) == posted
    assert api.call("GET", "/org/webhooks", token=alice.token).body["webhooks"][0]["state"] == "disabled"


# --- faults: retries, the dead-letter queue, nothing lost or duplicated ------------------------------------


class _FailingFirst:
    """A boto3 client whose named call fails the first ``times`` calls (``times=None``: always)."""

    def __init__(
        self,
        client: Any,
        *,
        operation: str,
        times: int | None,
        error: Exception | None = None,
        answer: dict[str, Any] | None = None,
    ) -> None:
        self._client, self._operation, self.remaining = client, operation, times
        self._error, self._answer = error, answer
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._client, name)
        if name != self._operation:
            return real

        def call(**params: Any) -> Any:
            self.calls += 1
            if self.remaining is None or self.remaining > 0:
                if self.remaining is not None:
                    self.remaining -= 1
                if self._answer is not None:
                    return self._answer
                raise self._error
            return real(**params)

        return call


def _throttled(operation: str) -> ClientError:
    return ClientError({"Error": {"Code": "Throttling", "Message": "Maximum sending rate exceeded."}}, operation)


def test_ses_throttling_is_retried_and_the_mail_sent_once(api, audit_stream, sent_mail, monkeypatch):
    flaky = _FailingFirst(notifications._ses(), operation="send_raw_email", times=2, error=_throttled("SendRawEmail"))
    monkeypatch.setattr(notifications, "_ses", lambda: flaky)
    bob = api.login(user="bob")
    assert api.add_key(bob).status == 201
    audit_stream.drain()

    assert len(_mail_to(sent_mail, "bob@acme.example")) == 1
    [delivery] = _deliveries("mail#acme#bob")
    assert (delivery.state, delivery.attempts) == ("delivered", 3)
    assert audit_stream.dead_letters == []


def test_ses_throttled_for_good_ends_in_the_dead_letter_queue_and_blocks_no_other_event(
    api, audit_stream, sent_mail, receiver, monkeypatch
):
    alice = api.login(user="alice", admin=True)
    created = _create_webhook(api, alice, receiver.url)
    receiver.secret = created["secret"]
    audit_stream.drain()
    down = _FailingFirst(notifications._ses(), operation="send_raw_email", times=None, error=_throttled("SendRawEmail"))
    monkeypatch.setattr(notifications, "_ses", lambda: down)

    bob = api.login(user="bob")
    assert api.add_key(bob).status == 201  # mailed: fails
    api.login(user="carol")  # not mailed: fine
    audit_stream.drain()

    [poison] = audit_stream.dead_letters
    assert AuditEvent.from_raw_data(poison["dynamodb"]["NewImage"]).action == "key.registered"
    assert sent_mail == []
    # Every event reached the webhook exactly once, the one in the dead-letter queue included.
    ids = receiver.accepted_ids()
    assert len(ids) == len(set(ids)) == 4  # webhook.created, bob's login, key.registered, carol's login

    # SES recovers; the dead letter is driven again: the mail goes out once, the webhook is not repeated.
    monkeypatch.setattr(notifications, "_ses", lambda: down._client)
    from app import deliver_audit_events
    from devstack.stream import InvocationContext

    for _ in range(2):
        assert deliver_audit_events({"Records": [poison]}, InvocationContext(seconds=60)) == {"batchItemFailures": []}
    assert len(_mail_to(sent_mail, "bob@acme.example")) == 1
    assert receiver.accepted_ids() == ids


def test_a_webhook_timing_out_ends_in_the_dead_letter_queue_and_is_delivered_once_later(
    api, audit_stream, receiver, monkeypatch
):
    monkeypatch.setattr(webhooks, "READ_TIMEOUT_SECONDS", 0.3)
    alice = api.login(user="alice", admin=True)
    created = _create_webhook(api, alice, receiver.url, ["key.registered"])
    receiver.secret = created["secret"]
    audit_stream.drain()
    receiver.delay_seconds = 1.0

    bob = api.login(user="bob")
    assert api.add_key(bob).status == 201
    audit_stream.drain()
    [dead] = audit_stream.dead_letters
    assert receiver.accepted() == [] and len(receiver.received) >= 2
    [delivery] = _deliveries(webhooks.channel(org_id="acme", webhook_id=created["webhook"]["id"]))
    assert delivery.state == "failed" and "did not answer" in delivery.detail

    receiver.delay_seconds = 0
    from app import deliver_audit_events
    from devstack.stream import InvocationContext

    for _ in range(2):
        assert deliver_audit_events({"Records": [dead]}, InvocationContext(seconds=60)) == {"batchItemFailures": []}
    [received] = receiver.accepted()
    assert received.verified and received.payload["type"] == "key.registered"


def test_eventbridge_failing_ends_in_the_dead_letter_queue_without_losing_the_event(
    api, audit_stream, bus_queue, monkeypatch
):
    failing = _FailingFirst(
        outbox._events(),
        operation="put_events",
        times=None,
        answer={"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}]},
    )
    monkeypatch.setattr(outbox, "_events", lambda: failing)
    api.login(user="bob")
    audit_stream.drain()
    [dead] = audit_stream.dead_letters
    assert bus_queue() == []
    assert failing.calls >= 2 * outbox.ATTEMPTS

    monkeypatch.setattr(outbox, "_events", lambda: failing._client)
    from app import deliver_audit_events
    from devstack.stream import InvocationContext

    for _ in range(2):
        deliver_audit_events({"Records": [dead]}, InvocationContext(seconds=60))
    [event] = bus_queue()
    assert event["detail-type"] == "login"


def test_a_poison_record_never_blocks_the_others(api, audit_stream, receiver):
    from devstack.stream import InvocationContext

    alice = api.login(user="alice", admin=True)
    created = _create_webhook(api, alice, receiver.url)
    receiver.secret = created["secret"]
    api.login(user="bob")
    records: list[dict[str, Any]] = []
    real = audit_stream._handler
    audit_stream._handler = lambda event, context: (records.extend(event["Records"]), {"batchItemFailures": []})[1]
    audit_stream.drain()
    poison = {"eventName": "INSERT", "dynamodb": {"SequenceNumber": "1", "NewImage": {"org_id": {"S": "acme"}}}}

    answer = real({"Records": [poison, *records]}, InvocationContext(seconds=60))
    assert answer == {"batchItemFailures": [{"itemIdentifier": "1"}]}
    # alice's login came before the webhook: an endpoint gets the events from its creation on.
    assert [r.payload["type"] for r in receiver.accepted()] == ["webhook.created", "login"]
