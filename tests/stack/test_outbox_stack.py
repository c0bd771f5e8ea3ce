"""The outbox end to end on the running local stack (``python -m devstack run``): real HTTP
requests, the audit table's stream pumped into the delivery function, mail to moto's SES (read
back with ``python -m devstack mail``) and a webhook receiver that checks every signature.

The story: someone with bob's session adds a security key at night. bob gets a mail saying
which key, when and from where; the organization's SIEM webhook gets the signed event once.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.authenticator import SoftwareAuthenticator
from tests.support.local_stack import (
    PROJECT_ROOT,
    LocalStack,
    running_local_stack,
    stack_environment,
)
from tests.support.stack_client import (
    PYNAMODB_TIME_FORMAT,
    StackClient,
    StackTables,
    session_id_of,
    unique_org,
)
from tests.support.webhook_receiver import Receiver, running_receiver

# The stream is polled every 0.25 s; a delivery takes a few round trips to moto.
DELIVERY_TIMEOUT_SECONDS = 15.0


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    # One failed delivery disables an endpoint, so that a story can start from a disabled one.
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("KEYWARD_WEBHOOK_DISABLE_AFTER_FAILURES", "1")
        with running_local_stack(tmp_path_factory.mktemp("local-stack-outbox")) as stack:
            yield stack


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def _eventually(check: Callable[[], bool], *, what: str) -> None:
    deadline = time.monotonic() + DELIVERY_TIMEOUT_SECONDS
    while not check():
        assert time.monotonic() < deadline, f"not within {DELIVERY_TIMEOUT_SECONDS} s: {what}"
        time.sleep(0.2)


def _outbox(local_stack: LocalStack) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "devstack", "mail", "--endpoint", local_stack.dynamodb],
        cwd=PROJECT_ROOT,
        env=stack_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_key_added_with_a_members_session_is_mailed_to_them_and_streamed_signed_to_the_webhook(
    keyward: StackClient, local_stack: LocalStack, receiver: Receiver
):
    org = unique_org("outbox")
    admin = keyward.token(org=org, user="alice", admin=True)
    created = keyward.call(
        "POST",
        "/org/webhooks",
        token=admin,
        body={"url": receiver.url, "events": ["key.registered", "key.deleted"], "description": "SIEM"},
    )
    assert created.status == 201, created
    receiver.secret = created.body["secret"]

    stolen = keyward.token(org=org, user="bob")
    added = keyward.add_key(stolen, SoftwareAuthenticator(), name="Attacker key")
    assert added.status == 201, added

    _eventually(lambda: len(receiver.accepted()) == 1, what="the webhook receives key.registered")
    [delivery] = receiver.accepted()
    assert delivery.verified
    assert delivery.payload["type"] == "key.registered"
    assert delivery.payload["data"]["org_id"] == org and delivery.payload["data"]["user_id"] == "bob"
    assert delivery.payload["data"]["details"]["name"] == "Attacker key"

    _eventually(lambda: f"To: bob@{org}.example" in _outbox(local_stack), what="bob's mail in the outbox")
    outbox = _outbox(local_stack)
    mail = outbox.split(f"To: bob@{org}.example", 1)[1].split("-" * 72, 1)[0]
    assert "Subject: keyward: A security key was added to your account" in mail
    assert "“Attacker key”" in mail and "If this was not you" in mail
    assert stolen not in outbox and created.body["secret"] not in outbox

    deliveries = keyward.call("GET", f"/org/webhooks/{created.body['webhook']['id']}/deliveries", token=admin)
    assert [(d["action"], d["state"]) for d in deliveries.body["deliveries"]] == [("key.registered", "delivered")]
    # Later polls of the stream send nothing again.
    time.sleep(1.0)
    assert [r.message_id for r in receiver.received] == [delivery.message_id]


def test_a_member_cannot_manage_webhooks_over_http(keyward: StackClient, receiver: Receiver):
    org = unique_org("outbox")
    member = keyward.token(org=org, user="bob")
    reply = keyward.call("POST", "/org/webhooks", token=member, body={"url": receiver.url, "events": ["*"]})
    assert (reply.status, reply.code) == (403, "AdminRequired")
    admin = keyward.token(org=org, user="alice", admin=True)
    assert keyward.call("GET", "/org/webhooks", token=admin).body == {"webhooks": []}


def _webhook_item(db: StackTables, org: str, webhook_id: str) -> dict[str, Any]:
    item = db.get("webhooks", org_id=org, webhook_id=webhook_id)
    assert item is not None
    return item


def _key_check_long_ago(db: StackTables, org: str, token: str) -> None:
    """The session's last security-key check is older than the step-up window: a laptop left open."""
    moment = datetime.now(UTC) - timedelta(seconds=900 + 5)
    db.client.update_item(
        TableName=db.table("sessions-v2"),
        Key={"session_id": {"S": session_id_of(token)}},
        UpdateExpression="SET key_checked_at = :at",
        ConditionExpression="attribute_exists(session_id)",
        ExpressionAttributeValues={":at": {"S": moment.strftime(PYNAMODB_TIME_FORMAT)}},
    )


def test_a_disabled_siem_webhook_is_enabled_again_only_by_its_admins_after_a_step_up(
    keyward: StackClient, db: StackTables, receiver: Receiver
):
    """The SIEM endpoint was down and keyward disabled it. Someone at alice's unattended laptop
    cannot switch it (no recent key check), another organization's admin cannot touch it; alice
    steps up with her key and enables it, and the events from then on reach the SIEM, signed
    with the secret it always had."""
    org = unique_org("webhook-enable")
    alice_key = SoftwareAuthenticator()
    keyward.member_with_key(org=org, user="alice", admin=True, authenticator=alice_key)
    alice = keyward.mfa_login(org=org, user="alice", admin=True, authenticator=alice_key)
    created = keyward.call("POST", "/org/webhooks", token=alice, body={"url": receiver.url, "events": ["login"]})
    assert created.status == 201, created
    receiver.secret = created.body["secret"]
    webhook_id = created.body["webhook"]["id"]
    path = f"/org/webhooks/{webhook_id}"
    receiver.statuses = [500] * 3
    keyward.token(org=org, user="bob")
    _eventually(
        lambda: _webhook_item(db, org, webhook_id)["state"]["S"] == "disabled", what="keyward disables the endpoint"
    )
    disabled = _webhook_item(db, org, webhook_id)

    mallory = keyward.token(org=unique_org("webhook-enable-other"), user="mallory", admin=True)
    for body in ({"enabled": True}, {"url": "http://127.0.0.1:9/stolen"}):
        reply = keyward.call("PATCH", path, token=mallory, body=body)
        assert (reply.status, reply.code) == (404, "WebhookNotFound"), reply
    _key_check_long_ago(db, org, alice)
    reply = keyward.call("PATCH", path, token=alice, body={"enabled": True})
    assert (reply.status, reply.code) == (403, "ReauthenticationRequired"), reply
    assert _webhook_item(db, org, webhook_id) == disabled

    options = keyward.call("POST", "/auth/reauth/options", token=alice)
    assert options.status == 200, options
    stepped = keyward.call(
        "POST",
        "/auth/reauth/verify",
        token=alice,
        body={
            "challenge_id": options.body["challenge_id"],
            "credential": alice_key.authenticate(options.body["publicKey"], origin=keyward.origin),
        },
    )
    assert stepped.status == 200, stepped
    enabled = keyward.call("PATCH", path, token=alice, body={"enabled": True})
    assert enabled.status == 200, enabled
    assert (enabled.body["webhook"]["state"], enabled.body["webhook"]["consecutive_failures"]) == ("enabled", 0)

    keyward.token(org=org, user="carol")
    _eventually(
        lambda: any(r.payload["data"]["user_id"] == "carol" for r in receiver.accepted() if r.verified),
        what="the SIEM receives carol's login",
    )
    assert [r.payload["data"]["user_id"] for r in receiver.accepted()] == ["carol"]
    assert [e["action"] for e in db.audit(org) if e["action"].startswith("webhook.")] == [
        "webhook.created",
        "webhook.disabled",
        "webhook.enabled",
    ]
