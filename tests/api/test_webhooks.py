"""Organization settings → Webhooks: managing endpoints, the rule on where keyward may post
(https, public addresses only, checked again at delivery against DNS rebinding), and the audit
log's time range and NDJSON export."""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.base.config import settings
from chalicelib.base.models import AuditEvent, Delivery, Webhook
from chalicelib.delivery import outbox, webhook_secrets, webhooks
from tests.support.audit_log import logged_events
from tests.support.webhook_receiver import Receiver, running_receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


@pytest.fixture
def on_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rules of a deployed stage: https and public addresses only."""
    monkeypatch.setattr(webhooks, "settings", lambda: dataclasses.replace(settings(), stage="prod"))


def _resolving(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> list[str]:
    """DNS as the test says; returns the names asked for."""
    asked: list[str] = []

    def addresses(parts: Any) -> list[str]:
        asked.append(parts.hostname)
        if parts.hostname not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "unknown")
        return list(answers[parts.hostname])

    monkeypatch.setattr(webhooks, "_addresses", addresses)
    return asked


def _webhooks_stored(org: str = "acme") -> list[Webhook]:
    return list(Webhook.query(org, consistent_read=True))


def _secret_of(webhook: Webhook) -> str:
    """The endpoint's secret, unsealed as the delivery function does."""
    return webhook_secrets.unseal(
        org_id=webhook.org_id, webhook_id=webhook.webhook_id, sealed=webhook.sealed_secret, legacy=webhook.secret
    )


# --- managing endpoints -----------------------------------------------------------------------------


def test_only_admins_manage_webhooks(api, receiver):
    bob = api.login(user="bob")
    for method, path, body in (
        ("POST", "/org/webhooks", {"url": receiver.url, "events": ["*"]}),
        ("GET", "/org/webhooks", None),
        ("DELETE", "/org/webhooks/wh_0123456789abcdef", None),
        ("PATCH", "/org/webhooks/wh_0123456789abcdef", {"enabled": True}),
        ("GET", "/org/webhooks/wh_0123456789abcdef/deliveries", None),
    ):
        reply = api.call(method, path, token=bob.token, body=body)
        assert (reply.status, reply.code) == (403, "AdminRequired"), path
    assert _webhooks_stored() == []


def test_create_list_and_delete_a_webhook_and_the_audit_log_says_so(api, receiver):
    alice = api.login(user="alice", admin=True)
    created = api.call(
        "POST",
        "/org/webhooks",
        token=alice.token,
        body={"url": receiver.url, "events": ["key.registered", "key.deleted"], "description": "SIEM"},
    )
    assert created.status == 201
    webhook = created.body["webhook"]
    assert (webhook["url"], webhook["events"], webhook["state"], webhook["description"]) == (
        receiver.url,
        ["key.deleted", "key.registered"],
        "enabled",
        "SIEM",
    )
    [stored] = _webhooks_stored()
    assert _secret_of(stored) == created.body["secret"] and stored.created_by == "alice"

    listed = api.call("GET", "/org/webhooks", token=alice.token)
    assert listed.body == {"webhooks": [webhook]}
    assert created.body["secret"] not in json.dumps(listed.body)

    assert api.call("DELETE", f"/org/webhooks/{webhook['id']}", token=alice.token).status == 204
    assert _webhooks_stored() == []
    again = api.call("DELETE", f"/org/webhooks/{webhook['id']}", token=alice.token)
    assert (again.status, again.code) == (404, "WebhookNotFound")
    actions = [(e.action, e.target) for e in logged_events("acme") if e.action.startswith("webhook.")]
    assert actions == [("webhook.created", webhook["id"]), ("webhook.deleted", webhook["id"])]
    assert not any(
        created.body["secret"] in json.dumps(e.details.as_dict() if e.details else {}) for e in logged_events("acme")
    )


# --- the signing secret, sealed with KMS -----------------------------------------------------------


def _raw_item(org_id: str, webhook_id: str) -> dict[str, Any]:
    import boto3

    client = boto3.client("dynamodb", endpoint_url=settings().dynamodb_endpoint, region_name=settings().region)
    return client.get_item(
        TableName=settings().tables.webhooks,
        ConsistentRead=True,
        Key={"org_id": {"S": org_id}, "webhook_id": {"S": webhook_id}},
    )["Item"]


def _holds(item: dict[str, Any], secret: str) -> bool:
    """Whether the item holds the secret, its base64 key or the key's bytes, in any attribute."""
    import base64

    key = base64.b64decode(secret.removeprefix("whsec_"))
    text = json.dumps(
        {
            name: {kind: (value.hex() if isinstance(value, bytes) else value) for kind, value in typed.items()}
            for name, typed in item.items()
        },
        default=str,
    )
    binary = b"".join(value for typed in item.values() for value in typed.values() if isinstance(value, bytes))
    return (
        secret in text
        or secret.removeprefix("whsec_") in text
        or key.hex() in text
        or key in binary
        or secret.encode() in binary
    )


def test_the_table_holds_no_usable_signing_secret_and_deliveries_still_verify(api, audit_stream, receiver):
    from botocore.exceptions import ClientError

    alice = api.login(user="alice", admin=True)
    created = api.call("POST", "/org/webhooks", token=alice.token, body={"url": receiver.url, "events": ["*"]}).body
    secret, webhook_id = created["secret"], created["webhook"]["id"]
    item = _raw_item("acme", webhook_id)
    assert "secret" not in item and "sealed_secret" in item
    assert not _holds(item, secret)
    # The ciphertext is bound to its endpoint: moved onto another one, it does not decrypt.
    other = api.call(
        "POST", "/org/webhooks", token=alice.token, body={"url": receiver.url, "events": ["key.deleted"]}
    ).body
    with pytest.raises(ClientError) as refused:
        webhook_secrets.unseal(org_id="acme", webhook_id=other["webhook"]["id"], sealed=item["sealed_secret"]["B"])
    assert refused.value.response["Error"]["Code"] == "InvalidCiphertextException"
    with pytest.raises(ClientError):
        webhook_secrets.unseal(org_id="evil", webhook_id=webhook_id, sealed=item["sealed_secret"]["B"])

    # Delivery unseals it and signs with it: the receiver verifies with the secret shown once.
    receiver.secret = secret
    api.login(user="bob")
    audit_stream.drain()
    assert _logins_received(receiver) == ["bob"]
    assert receiver.received and all(r.verified for r in receiver.received)


def test_a_webhook_is_not_created_when_kms_does_not_seal_its_secret(api, receiver, monkeypatch):
    alice = api.login(user="alice", admin=True)
    monkeypatch.setattr(
        webhook_secrets, "settings", lambda: dataclasses.replace(settings(), webhook_secret_key="alias/no-such-key")
    )
    reply = api.call("POST", "/org/webhooks", token=alice.token, body={"url": receiver.url, "events": ["*"]})
    assert (reply.status, reply.code) == (503, "WebhookSecretKeyUnavailable"), reply.body
    assert _webhooks_stored() == []
    assert [e.action for e in logged_events("acme") if e.action.startswith("webhook.")] == []


def _in_clear(webhook_id: str, secret: str) -> None:
    """Store the endpoint's secret as endpoints from before sealing held it."""
    Webhook("acme", webhook_id).update(actions=[Webhook.secret.set(secret), Webhook.sealed_secret.remove()])


def test_an_endpoint_from_before_sealing_is_delivered_to_and_sealed_by_the_operators_command(
    api, audit_stream, receiver
):
    from keyward.__main__ import main

    alice = api.login(user="alice", admin=True)
    created = api.call("POST", "/org/webhooks", token=alice.token, body={"url": receiver.url, "events": ["login"]}).body
    webhook_id, receiver.secret = created["webhook"]["id"], created["secret"]
    _in_clear(webhook_id, created["secret"])
    api.login(user="bob")
    audit_stream.drain()
    assert _logins_received(receiver) == ["bob"]

    assert main(["webhooks", "seal-secrets"]) == 0
    item = _raw_item("acme", webhook_id)
    assert "secret" not in item and not _holds(item, created["secret"])
    assert main(["webhooks", "seal-secrets"]) == 0  # nothing left to seal; the sealed one stays
    assert _raw_item("acme", webhook_id)["sealed_secret"] == item["sealed_secret"]
    api.login(user="carol")
    audit_stream.drain()
    assert _logins_received(receiver) == ["bob", "carol"]
    assert all(r.verified for r in receiver.received)


def test_changing_an_endpoint_from_before_sealing_seals_its_secret(api, audit_stream, receiver):
    alice = api.login(user="alice", admin=True)
    created = api.call("POST", "/org/webhooks", token=alice.token, body={"url": receiver.url, "events": ["login"]}).body
    webhook_id, receiver.secret = created["webhook"]["id"], created["secret"]
    _in_clear(webhook_id, created["secret"])
    assert api.call("PATCH", f"/org/webhooks/{webhook_id}", token=alice.token, body={"events": ["*"]}).status == 200
    item = _raw_item("acme", webhook_id)
    assert "secret" not in item and not _holds(item, created["secret"])
    api.login(user="bob")
    audit_stream.drain()
    assert _logins_received(receiver) == ["bob"] and all(r.verified for r in receiver.received)


def test_another_organizations_webhook_is_unknown(api, receiver):
    alice = api.login(user="alice", admin=True)
    created = api.call("POST", "/org/webhooks", token=alice.token, body={"url": receiver.url, "events": ["*"]}).body
    mallory = api.login(org="evil", user="mallory", admin=True)
    webhook_id = created["webhook"]["id"]
    for method, path, body in (
        ("DELETE", f"/org/webhooks/{webhook_id}", None),
        ("GET", f"/org/webhooks/{webhook_id}/deliveries", None),
        ("PATCH", f"/org/webhooks/{webhook_id}", {"enabled": False}),
    ):
        reply = api.call(method, path, token=mallory.token, body=body)
        assert (reply.status, reply.code) == (404, "WebhookNotFound")
    assert api.call("GET", "/org/webhooks", token=mallory.token).body == {"webhooks": []}
    assert len(_webhooks_stored()) == 1


@pytest.mark.parametrize(
    "body, code",
    [
        ({"url": "http://127.0.0.1:9/x", "events": []}, "InvalidWebhookEvents"),
        ({"url": "http://127.0.0.1:9/x", "events": ["Key Registered"]}, "InvalidWebhookEvents"),
        ({"url": "http://127.0.0.1:9/x", "events": "*"}, "InvalidWebhookEvents"),
        (
            {"url": "http://127.0.0.1:9/x", "events": ["key.registered"] * 1 + [f"a.b{i}" for i in range(60)]},
            "InvalidWebhookEvents",
        ),
        ({"url": "ftp://example.com/x", "events": ["*"]}, "WebhookUrlRefused"),
        ({"url": "http://user:pw@127.0.0.1/x", "events": ["*"]}, "WebhookUrlRefused"),
        ({"url": "http://127.0.0.1:99999/x", "events": ["*"]}, "WebhookUrlRefused"),
        ({"url": "/relative", "events": ["*"]}, "WebhookUrlRefused"),
        ({"url": "http://[::1/x", "events": ["*"]}, "WebhookUrlRefused"),
        ({"url": "http://127.0.0.1/x", "events": ["*"], "description": "a\u0000b"}, "MalformedRequest"),
        ({"url": "http://127.0.0.1/" + "x" * 2100, "events": ["*"]}, "MalformedRequest"),
        ({"url": "http://127.0.0.1/x", "events": ["*"], "secret": "mine"}, "MalformedRequest"),
        ({"url": "http://127.0.0.1/x", "events": ["*"], "description": 5}, "MalformedRequest"),
    ],
)
def test_bad_webhooks_are_refused_with_a_reason_and_nothing_is_stored(api, body, code):
    alice = api.login(user="alice", admin=True)
    reply = api.call("POST", "/org/webhooks", token=alice.token, body=body)
    assert (reply.status, reply.code) == (400, code), reply.body
    assert _webhooks_stored() == []


# --- enabling, disabling and changing an endpoint ----------------------------------------------------


def _disabled_by_failures(api, audit_stream, receiver, monkeypatch) -> tuple[Any, dict[str, Any]]:
    """alice's endpoint for every event, which keyward disabled after two failed deliveries."""
    monkeypatch.setattr(outbox, "BACKOFF_SECONDS", 0.01)
    monkeypatch.setattr(webhooks, "settings", lambda: dataclasses.replace(settings(), webhook_disable_after_failures=2))
    alice = api.login(user="alice", admin=True)
    created = api.call("POST", "/org/webhooks", token=alice.token, body={"url": receiver.url, "events": ["*"]}).body
    receiver.secret = created["secret"]
    receiver.statuses = [500] * 6
    api.login(user="bob")
    audit_stream.drain()
    [stored] = _webhooks_stored()
    assert (stored.state, stored.consecutive_failures) == ("disabled", 2)
    receiver.statuses = []
    return alice, created


def _mail_to(sent_mail: list[Any], address: str) -> list[Any]:
    import email

    return [email.message_from_string(m.raw_data) for m in sent_mail if any(address in d for d in m.destinations)]


def _logins_received(receiver: Receiver) -> list[str]:
    return [r.payload["data"]["user_id"] for r in receiver.accepted() if r.verified and r.payload["type"] == "login"]


def test_an_endpoint_keyward_disabled_is_enabled_again_with_a_fresh_run_and_the_events_from_then_on(
    api, audit_stream, receiver, sent_mail, monkeypatch
):
    alice, created = _disabled_by_failures(api, audit_stream, receiver, monkeypatch)
    webhook_id = created["webhook"]["id"]
    api.login(user="carol")  # recorded while the endpoint is disabled, streamed after it is enabled

    reply = api.call("PATCH", f"/org/webhooks/{webhook_id}", token=alice.token, body={"enabled": True})
    assert reply.status == 200, reply.body
    webhook = reply.body["webhook"]
    assert (webhook["state"], webhook["consecutive_failures"], webhook["disabled_at"]) == ("enabled", 0, None)
    assert api.call("GET", "/org/webhooks", token=alice.token).body == {"webhooks": [webhook]}
    [stored] = _webhooks_stored()
    assert (stored.state, stored.consecutive_failures, _secret_of(stored)) == ("enabled", 0, created["secret"])
    api.login(user="dan")
    audit_stream.drain()

    # Signed with the secret it always had; carol's login of the disabled time is not sent. Its
    # creation, recorded while it was enabled, went through on the stream's retry.
    assert _logins_received(receiver) == ["dan"]
    assert [r.payload["type"] for r in receiver.accepted()] == ["webhook.created", "webhook.enabled", "login"]
    [enabled] = api.call("GET", "/org/audit?action=webhook.enabled", token=alice.token).body["events"]
    assert (enabled["actor"], enabled["actor_kind"], enabled["target"]) == ("alice", "member", webhook_id)
    assert enabled["details"] == {"url": receiver.url, "events": ["*"]}
    # Its history stays: the failed deliveries of before are still listed.
    states = [
        d["state"]
        for d in api.call("GET", f"/org/webhooks/{webhook_id}/deliveries", token=alice.token).body["deliveries"]
    ]
    assert "delivered" in states and "skipped" in states
    # Only keyward disabling it was mailed; enabling it is not news to the admins.
    assert [m["Subject"] for m in _mail_to(sent_mail, "alice@acme.example")] == [
        "keyward: A webhook was disabled after failing repeatedly"
    ]


def test_a_re_enabled_endpoint_gets_its_full_run_of_attempts_again(api, audit_stream, receiver, monkeypatch):
    alice, created = _disabled_by_failures(api, audit_stream, receiver, monkeypatch)
    webhook_id = created["webhook"]["id"]
    assert api.call("PATCH", f"/org/webhooks/{webhook_id}", token=alice.token, body={"enabled": True}).status == 200
    audit_stream.drain()  # webhook.enabled, delivered
    # One failed delivery (its three attempts), then the stream's retry goes through: had the
    # streak of two not started over, that one failure would have disabled it again.
    receiver.statuses = [500] * 3
    api.login(user="bob")
    audit_stream.drain()
    stored = Webhook.get("acme", webhook_id, consistent_read=True)
    assert (stored.state, stored.consecutive_failures) == ("enabled", 0)
    assert [r.status for r in receiver.received][-4:] == [500, 500, 500, 204]


def test_an_admin_disabling_an_endpoint_tells_the_endpoint_and_every_admin_and_sends_it_nothing_more(
    api, audit_stream, receiver, sent_mail
):
    alice = api.login(user="alice", admin=True)
    api.login(user="zoe", admin=True)
    created = api.call("POST", "/org/webhooks", token=alice.token, body={"url": receiver.url, "events": ["login"]}).body
    receiver.secret = created["secret"]
    reply = api.call("PATCH", f"/org/webhooks/{created['webhook']['id']}", token=alice.token, body={"enabled": False})
    assert reply.status == 200 and reply.body["webhook"]["state"] == "disabled" and reply.body["webhook"]["disabled_at"]
    api.login(user="bob")
    audit_stream.drain()

    # It wanted logins only, and is disabled now: still, it is told that it was disabled.
    assert [(r.payload["type"], r.verified) for r in receiver.accepted()] == [("webhook.disabled", True)]
    [disabled] = api.call("GET", "/org/audit?action=webhook.disabled", token=alice.token).body["events"]
    assert (disabled["actor"], disabled["actor_kind"]) == ("alice", "member")
    for admin in ("alice", "zoe"):
        [mail] = _mail_to(sent_mail, f"{admin}@acme.example")
        assert mail["Subject"] == "keyward: A webhook was disabled"
        assert (
            f"alice disabled the webhook {created['webhook']['id']} ({receiver.url})"
            in mail.get_payload()[0].get_payload(decode=True).decode()
        )


def test_a_change_that_changes_nothing_writes_nothing(api, receiver):
    alice = api.login(user="alice", admin=True)
    created = api.call("POST", "/org/webhooks", token=alice.token, body={"url": receiver.url, "events": ["login"]}).body
    reply = api.call(
        "PATCH",
        f"/org/webhooks/{created['webhook']['id']}",
        token=alice.token,
        body={"enabled": True, "url": receiver.url, "events": ["login"]},
    )
    assert reply.status == 200 and reply.body["webhook"] == created["webhook"]
    assert [e.action for e in logged_events("acme") if e.action.startswith("webhook.")] == ["webhook.created"]


def test_the_url_and_events_are_changed_with_the_checks_of_creation(api, receiver, on_aws, monkeypatch):
    _resolving(
        monkeypatch,
        {"hooks.example.com": ["93.184.216.34"], "new.example.com": ["93.184.216.35"], "vpc.example.com": ["10.0.0.7"]},
    )
    alice = api.login(user="alice", admin=True)
    created = api.call(
        "POST", "/org/webhooks", token=alice.token, body={"url": "https://hooks.example.com/k", "events": ["login"]}
    ).body
    path = f"/org/webhooks/{created['webhook']['id']}"
    refused = api.call("PATCH", path, token=alice.token, body={"url": "https://vpc.example.com/k"})
    assert (refused.status, refused.code) == (400, "WebhookUrlRefused")

    reply = api.call(
        "PATCH", path, token=alice.token, body={"url": "https://new.example.com/k", "events": ["key.deleted", "*"]}
    )
    assert reply.status == 200, reply.body
    assert (reply.body["webhook"]["url"], reply.body["webhook"]["events"]) == (
        "https://new.example.com/k",
        ["*", "key.deleted"],
    )
    [stored] = _webhooks_stored()
    assert (stored.url, stored.events, _secret_of(stored)) == (
        "https://new.example.com/k",
        {"*", "key.deleted"},
        created["secret"],
    )
    [changed] = [e for e in logged_events("acme") if e.action == "webhook.changed"]
    assert changed.details.as_dict() == {
        "url": "https://new.example.com/k",
        "events": ["*", "key.deleted"],
        "changed": ["url", "events"],
        "previous_url": "https://hooks.example.com/k",
    }


@pytest.mark.parametrize(
    "body, code",
    [
        ({}, "MalformedRequest"),
        ({"enabled": "yes"}, "MalformedRequest"),
        ({"enabled": 1}, "MalformedRequest"),
        ({"enabled": None}, "MalformedRequest"),
        ({"enabled": True, "secret": "mine"}, "MalformedRequest"),
        ({"enabled": True, "state": "enabled"}, "MalformedRequest"),
        ({"url": ""}, "MalformedRequest"),
        ({"url": "ftp://example.com/x"}, "WebhookUrlRefused"),
        ({"enabled": True, "events": []}, "InvalidWebhookEvents"),
        ({"events": "*"}, "InvalidWebhookEvents"),
        ({"events": ["Key Registered"]}, "InvalidWebhookEvents"),
        ([{"enabled": True}], "MalformedJson"),
    ],
)
def test_a_bad_change_is_refused_with_a_reason_and_nothing_changes(
    api, audit_stream, receiver, monkeypatch, body, code
):
    alice, created = _disabled_by_failures(api, audit_stream, receiver, monkeypatch)
    before = _webhooks_stored()[0].serialize()
    logged = [e.event_key for e in logged_events("acme")]
    reply = api.call("PATCH", f"/org/webhooks/{created['webhook']['id']}", token=alice.token, body=body)
    assert (reply.status, reply.code) == (400, code), reply.body
    assert _webhooks_stored()[0].serialize() == before
    assert [e.event_key for e in logged_events("acme")] == logged


def test_an_unknown_webhook_is_not_found_for_a_change(api):
    alice = api.login(user="alice", admin=True)
    for webhook_id in ("wh_0123456789abcdef", "nonsense", "wh_" + "x" * 40):
        reply = api.call("PATCH", f"/org/webhooks/{webhook_id}", token=alice.token, body={"enabled": True})
        assert (reply.status, reply.code) == (404, "WebhookNotFound"), webhook_id


def test_changing_an_endpoint_needs_a_recent_key_check(api, receiver, monkeypatch):
    from datetime import timedelta

    from chalicelib.base import clock
    from tests.support.authenticator import SoftwareAuthenticator

    alice = api.login(user="alice", admin=True)
    assert api.add_key(alice, SoftwareAuthenticator()).status == 201
    created = api.call("POST", "/org/webhooks", token=alice.token, body={"url": receiver.url, "events": ["*"]}).body
    later = clock.now() + timedelta(seconds=settings().reauth_window_seconds + 5)
    monkeypatch.setattr(clock, "now", lambda: later)
    reply = api.call("PATCH", f"/org/webhooks/{created['webhook']['id']}", token=alice.token, body={"enabled": False})
    assert (reply.status, reply.code) == (403, "ReauthenticationRequired")
    assert _webhooks_stored()[0].state == "enabled"


def test_an_endpoint_keyward_disables_while_an_admin_disables_it_is_recorded_once_as_keywards(
    api, receiver, monkeypatch
):
    alice = api.login(user="alice", admin=True)
    created = api.call("POST", "/org/webhooks", token=alice.token, body={"url": receiver.url, "events": ["*"]}).body
    webhook_id = created["webhook"]["id"]
    read = webhooks._get

    def read_then_keyward_disables(**where: Any) -> Webhook:
        found = read(**where)
        if found.state == "enabled":
            monkeypatch.setattr(
                webhooks, "settings", lambda: dataclasses.replace(settings(), webhook_disable_after_failures=1)
            )
            assert webhooks.record_failure(webhook=found, reason="HTTP 500")
        return found

    monkeypatch.setattr(webhooks, "_get", read_then_keyward_disables)
    reply = api.call("PATCH", f"/org/webhooks/{webhook_id}", token=alice.token, body={"enabled": False})
    assert reply.status == 200 and reply.body["webhook"]["state"] == "disabled"
    disabled = [(e.actor, e.actor_kind) for e in logged_events("acme") if e.action == "webhook.disabled"]
    assert disabled == [("keyward", "system")]


# --- where keyward may post (a deployed stage) -----------------------------------------------------


@pytest.mark.parametrize(
    "url, addresses",
    [
        ("http://hooks.example.com/x", ["93.184.216.34"]),  # not https
        ("https://127.0.0.1/x", ["127.0.0.1"]),  # loopback
        ("https://metadata.example.com/x", ["169.254.169.254"]),  # the metadata service
        ("https://vpc.example.com/x", ["10.0.12.7"]),  # inside the VPC
        ("https://mixed.example.com/x", ["93.184.216.34", "192.168.1.1"]),  # one private answer is enough
        ("https://v6.example.com/x", ["::1"]),
        ("https://mapped.example.com/x", ["::ffff:10.0.0.1"]),
        ("https://nowhere.example.com/x", []),  # does not resolve
    ],
)
def test_outside_the_local_stage_only_https_urls_of_public_addresses_are_accepted(
    api, on_aws, monkeypatch, url, addresses
):
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname
    _resolving(monkeypatch, {host: addresses} if addresses else {})
    alice = api.login(user="alice", admin=True)
    reply = api.call("POST", "/org/webhooks", token=alice.token, body={"url": url, "events": ["*"]})
    assert (reply.status, reply.code) == (400, "WebhookUrlRefused"), reply.body
    assert _webhooks_stored() == []


def test_a_public_https_endpoint_is_accepted_outside_the_local_stage(api, on_aws, monkeypatch):
    _resolving(monkeypatch, {"hooks.example.com": ["93.184.216.34", "2606:2800:220:1::1"]})
    alice = api.login(user="alice", admin=True)
    reply = api.call(
        "POST", "/org/webhooks", token=alice.token, body={"url": "https://hooks.example.com/keyward", "events": ["*"]}
    )
    assert reply.status == 201, reply.body


def test_dns_rebinding_after_creation_does_not_reach_a_private_address(
    api, audit_stream, on_aws, receiver, monkeypatch
):
    """The name resolved to a public address when the endpoint was made; at delivery it points at
    the receiver on 127.0.0.1. keyward checks again, refuses, and never connects."""
    monkeypatch.setattr(outbox, "BACKOFF_SECONDS", 0.01)
    answers = {"hooks.example.com": ["93.184.216.34"]}
    asked = _resolving(monkeypatch, answers)
    alice = api.login(user="alice", admin=True)
    port = receiver.url.split(":")[2].split("/")[0]
    created = api.call(
        "POST",
        "/org/webhooks",
        token=alice.token,
        body={"url": f"https://hooks.example.com:{port}/keyward", "events": ["*"]},
    )
    assert created.status == 201
    answers["hooks.example.com"] = ["127.0.0.1"]
    audit_stream.drain()

    assert receiver.received == []
    assert asked.count("hooks.example.com") >= 2
    [delivery] = list(
        Delivery.query(webhooks.channel(org_id="acme", webhook_id=created.body["webhook"]["id"]), consistent_read=True)
    )
    assert delivery.state == "failed" and "private, loopback or link-local" in delivery.detail


def test_deliveries_are_listed_newest_first_for_the_webhooks_admins(api, audit_stream, receiver):
    alice = api.login(user="alice", admin=True)
    created = api.call("POST", "/org/webhooks", token=alice.token, body={"url": receiver.url, "events": ["login"]}).body
    for _ in range(3):
        api.login(user="bob")
    audit_stream.drain()
    reply = api.call("GET", f"/org/webhooks/{created['webhook']['id']}/deliveries?limit=2", token=alice.token)
    assert reply.status == 200
    deliveries = reply.body["deliveries"]
    assert [d["action"] for d in deliveries] == ["login", "login"]
    assert deliveries[0]["last_attempt_at"] >= deliveries[1]["last_attempt_at"]
    assert len(receiver.received) == 3
    bad = api.call("GET", f"/org/webhooks/{created['webhook']['id']}/deliveries?limit=0", token=alice.token)
    assert (bad.status, bad.code) == (400, "MalformedRequest")


# --- the audit log's time range and export ----------------------------------------------------------


def _audit_at(moment: str, action: str = "login") -> None:
    """An event at ``moment``, in an organization that existed then (the log is read back to its creation)."""
    from datetime import datetime, timedelta

    from chalicelib.base import audit_shards
    from chalicelib.base.models import Organization

    at = datetime.fromisoformat(moment)
    if Organization.get("acme").created_at > at:
        Organization("acme").update(actions=[Organization.created_at.set(at - timedelta(days=1))])
    AuditEvent(
        audit_shards.shard_key("acme", audit_shards.day_of(at), 0),
        f"{at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}#0000",
        org_id="acme",
        at=at,
        actor="bob",
        action=action,
        ttl=datetime.now(at.tzinfo) + timedelta(days=1),
    ).save()


def test_the_audit_log_takes_a_time_range(api):
    alice = api.login(user="alice", admin=True)
    for moment in ("2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00"):
        _audit_at(moment)
    reply = api.call("GET", "/org/audit?since=2026-01-15T00:00:00Z&until=2026-03-01T00:00:00Z", token=alice.token)
    assert reply.status == 200
    assert [e["at"] for e in reply.body["events"]] == ["2026-02-01T00:00:00Z"]
    since = api.call("GET", "/org/audit?since=2026-02-01T00:00:00Z&action=login&user_id=", token=alice.token)
    assert "2026-01-01T00:00:00Z" not in [e["at"] for e in since.body["events"]]
    assert "2026-02-01T00:00:00Z" in [e["at"] for e in since.body["events"]]


@pytest.mark.parametrize(
    "query",
    [
        "since=yesterday",
        "until=2026-01-01T00:00:00",
        "since=0001-01-01T00:00:00%2B01:00",
        "since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
        "since=2026-01-01T00:00:00Z&until=2026-01-01T00:00:00Z",
        # Given but empty: not a date-time, as the documented schema says they must be.
        "until=",
        "since=",
        "since=2026-01-01T00:00:00Z&until=",
    ],
)
def test_a_bad_time_range_is_refused(api, query):
    alice = api.login(user="alice", admin=True)
    for path in ("/org/audit", "/org/audit/export"):
        reply = api.call("GET", f"{path}?{query}", token=alice.token)
        assert (reply.status, reply.code) == (400, "InvalidTimeRange"), (path, reply.body)


def test_the_export_is_ndjson_oldest_first_and_continues_with_its_cursor(api, monkeypatch):
    from chalicelib.base import audit

    monkeypatch.setattr(audit, "EXPORT_PAGE", 2)
    alice = api.login(user="alice", admin=True)
    for day in range(1, 6):
        _audit_at(f"2026-01-0{day}T00:00:00+00:00")
    seen: list[str] = []
    cursor = ""
    for _ in range(5):
        reply = api.call("GET", f"/org/audit/export?until=2026-02-01T00:00:00Z&next={cursor}", token=alice.token)
        assert reply.status == 200
        headers = {name.lower(): value for name, value in reply.headers.items()}
        assert headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in reply.body.splitlines()] if isinstance(reply.body, str) else [reply.body]
        seen += [line["at"] for line in lines]
        cursor = headers.get("keyward-next-cursor", "")
        if not cursor:
            break
    assert seen == [f"2026-01-0{day}T00:00:00Z" for day in range(1, 6)]
    member = api.login(user="bob")
    assert api.call("GET", "/org/audit/export", token=member.token).code == "AdminRequired"


# --- an admin cannot blind the SIEM -------------------------------------------------------------------


@pytest.fixture
def elsewhere() -> Iterator[Receiver]:
    """Where an admin points the organization's SIEM webhook for a while."""
    with running_receiver() as running:
        yield running


def _types(receiver: Receiver) -> list[str]:
    assert all(r.verified for r in receiver.accepted())
    return [
        r.payload["type"]
        for r in receiver.accepted()
        if r.payload["type"].startswith(("webhook.", "key.deleted", "login"))
    ]


@pytest.mark.parametrize("stream_runs", ["after_each_step", "once_at_the_end"])
def test_an_admin_who_redirects_the_siem_webhook_acts_and_restores_it_cannot_hide_the_detour(
    api, audit_stream, receiver, elsewhere, sent_mail, stream_runs
):
    siem = receiver
    alice = api.login(user="alice", admin=True)
    api.login(user="zoe", admin=True)
    bob = api.login(user="bob")
    assert api.add_key(bob).status == 201
    [key] = api.call("GET", "/org/mfa/keys?user_id=bob", token=alice.token).body["keys"]
    created = api.call("POST", "/org/webhooks", token=alice.token, body={"url": siem.url, "events": ["*"]}).body
    siem.secret = elsewhere.secret = created["secret"]
    path = f"/org/webhooks/{created['webhook']['id']}"
    audit_stream.drain()
    sent_mail.clear()

    def step(method: str, url: str, body: dict[str, Any] | None, status: int) -> None:
        assert api.call(method, url, token=alice.token, body=body).status == status
        if stream_runs == "after_each_step":
            audit_stream.drain()

    step("PATCH", path, {"url": elsewhere.url}, 200)
    step("DELETE", f"/org/members/bob/mfa/keys/{key['id']}", None, 204)
    step("PATCH", path, {"url": siem.url}, 200)
    api.login(user="carol")
    audit_stream.drain()

    # The SIEM hears of the detour, with where its events went, and of their return.
    assert _types(siem) == ["webhook.created", "webhook.changed", "webhook.changed", "login"]
    away, back = [r.payload["data"]["details"] for r in siem.accepted() if r.payload["type"] == "webhook.changed"]
    assert (away["url"], away["previous_url"], back["url"], back["previous_url"]) == (
        elsewhere.url,
        siem.url,
        siem.url,
        elsewhere.url,
    )
    # Each event went where the endpoint pointed when it was recorded, however late the stream ran.
    assert _types(elsewhere) == ["webhook.changed", "key.deleted", "webhook.changed"]
    # Every admin is mailed of both changes.
    for admin in ("alice", "zoe"):
        assert [m["Subject"] for m in _mail_to(sent_mail, f"{admin}@acme.example")] == [
            "keyward: A webhook was changed"
        ] * 2


@pytest.mark.parametrize("stream_runs", ["after_each_step", "once_at_the_end"])
def test_an_admin_who_disables_the_siem_webhook_acts_and_enables_it_cannot_hide_the_pause(
    api, audit_stream, receiver, sent_mail, stream_runs
):
    siem = receiver
    alice = api.login(user="alice", admin=True)
    api.login(user="zoe", admin=True)
    bob = api.login(user="bob")
    assert api.add_key(bob).status == 201
    [key] = api.call("GET", "/org/mfa/keys?user_id=bob", token=alice.token).body["keys"]
    # The SIEM takes only key deletions: the change events reach it all the same.
    created = api.call(
        "POST", "/org/webhooks", token=alice.token, body={"url": siem.url, "events": ["key.deleted"]}
    ).body
    siem.secret = created["secret"]
    path = f"/org/webhooks/{created['webhook']['id']}"
    audit_stream.drain()
    sent_mail.clear()

    def step(method: str, url: str, body: dict[str, Any] | None, status: int) -> None:
        assert api.call(method, url, token=alice.token, body=body).status == status
        if stream_runs == "after_each_step":
            audit_stream.drain()

    step("PATCH", path, {"enabled": False}, 200)
    step("DELETE", f"/org/members/bob/mfa/keys/{key['id']}", None, 204)
    step("PATCH", path, {"enabled": True}, 200)
    audit_stream.drain()

    # Told of the pause, whatever its filter says; the deletion of the pause is not sent to it
    # (the endpoint was disabled then), and the SIEM knows from when to when to read the audit log.
    assert _types(siem) == ["webhook.disabled"]
    for admin in ("alice", "zoe"):
        assert [m["Subject"] for m in _mail_to(sent_mail, f"{admin}@acme.example")] == [
            "keyward: A webhook was disabled"
        ]


def test_a_deleted_siem_webhook_is_told_of_its_deletion_signed_with_its_secret(api, audit_stream, receiver, sent_mail):
    alice = api.login(user="alice", admin=True)
    created = api.call("POST", "/org/webhooks", token=alice.token, body={"url": receiver.url, "events": ["login"]}).body
    receiver.secret = created["secret"]
    assert api.call("DELETE", f"/org/webhooks/{created['webhook']['id']}", token=alice.token).status == 204
    api.login(user="bob")
    audit_stream.drain()

    [told] = receiver.accepted()
    assert (told.payload["type"], told.verified) == ("webhook.deleted", True)
    assert told.payload["data"]["details"] == {"url": receiver.url, "events": ["login"]}
    assert [m["Subject"] for m in _mail_to(sent_mail, "alice@acme.example")] == ["keyward: A webhook was deleted"]
