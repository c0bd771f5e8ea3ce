"""Compliance counted under an authenticator policy, against the running local stack over HTTP:
an admin's policy change is recounted by the stream function before any figure is shown, and
key registrations move the count from then on; an operator's edit of the table is recounted too."""

from __future__ import annotations

import time
import uuid
from typing import Any

from tests.support.authenticator import SoftwareAuthenticator
from tests.support.stack_client import StackClient, unique_org

REFUSED_MODEL = "5c0ffee0-1d2e-4f3a-9b8c-7d6e5f4a3b2c"


def _refused_model() -> SoftwareAuthenticator:
    return SoftwareAuthenticator(aaguid=uuid.UUID(REFUSED_MODEL).bytes)


def _status(keyward: StackClient, token: str) -> dict[str, Any]:
    reply = keyward.call("GET", "/org/mfa", token=token)
    assert reply.status == 200, reply
    return reply.body


def _until_recounted(keyward: StackClient, token: str) -> list[tuple[int | None, str]]:
    """Every (members_compliant, compliance state) GET /org/mfa shows until the recount ends."""
    seen = []
    deadline = time.monotonic() + 60
    while True:
        body = _status(keyward, token)
        seen.append((body["members_compliant"], body["compliance"]["state"]))
        if body["compliance"]["state"] == "done":
            return seen
        assert time.monotonic() < deadline, f"no recount within 60 s: {seen[-3:]}"
        time.sleep(0.05)


def test_a_policy_that_refuses_a_model_is_recounted_then_keys_move_the_count(keyward, db):
    org = unique_org("compliance")
    admin = keyward.token(org=org, user="alice", admin=True)
    keyward.add_key(admin)
    holders = {}
    for n in range(16):
        user = f"member{n:02d}"
        holders[user] = keyward.token(org=org, user=user)
        keyward.add_key(holders[user], _refused_model() if n % 2 else SoftwareAuthenticator())
    assert (_status(keyward, admin)["members_compliant"], _status(keyward, admin)["compliance"]) == (
        17,
        {"state": "done"},
    )

    reply = keyward.call("PUT", "/org/mfa/policy", token=admin, body={"denied_aaguids": [REFUSED_MODEL]})
    assert reply.status == 200 and reply.body["impact"]["members_noncompliant"] == 8, reply
    seen = _until_recounted(keyward, admin)
    # The first answer after the change says it is being recounted; no answer shows a figure of
    # the old policy, and the last one is right: alice and the eight members with accepted keys.
    assert seen[0] == (None, "recounting"), seen
    assert all(figure is None for figure, state in seen if state != "done"), seen
    assert seen[-1] == (9, "done")
    listed = {m["id"]: m["compliant"] for m in keyward.call("GET", "/org/members", token=admin).body["members"]}
    assert listed["member01"] is False and listed["member00"] is True

    # A member holding only the refused model cannot add another of it; nothing moves.
    token = holders["member01"]
    options = keyward.registration_options(token).body
    refused = keyward.register(
        token, options["challenge_id"], _refused_model().register(options["publicKey"], origin=keyward.origin)
    )
    assert (refused.status, refused.code) == (403, "AuthenticatorNotAllowed"), refused
    assert _status(keyward, admin)["members_compliant"] == 9
    # They register an accepted model: the registration's own transaction moves the count.
    keyward.add_key(token, SoftwareAuthenticator(), name="Accepted")
    assert (_status(keyward, admin)["members_compliant"], _status(keyward, admin)["compliance"]) == (
        10,
        {"state": "done"},
    )
    listed = {m["id"]: m["compliant"] for m in keyward.call("GET", "/org/members", token=admin).body["members"]}
    assert listed["member01"] is True
    # The preview reads the same counter.
    preview = keyward.call("GET", "/org/mfa/preview", token=admin).body
    assert (preview["members_compliant"], preview["compliance"]) == (10, {"state": "done"})


def test_an_operator_editing_the_policy_in_the_table_is_recounted(keyward, db):
    org = unique_org("compliance-op")
    admin = keyward.token(org=org, user="alice", admin=True)
    keyward.add_key(admin)
    bob = keyward.token(org=org, user="bob")
    keyward.add_key(bob, _refused_model())
    reply = keyward.call("PUT", "/org/mfa/policy", token=admin, body={"device_bound_only": True})
    assert reply.status == 200, reply
    assert _until_recounted(keyward, admin)[-1] == (2, "done")

    # An operator adds the model to the deny list in the AWS console: no version moves with it.
    db.client.update_item(
        TableName=db.table("orgs"),
        Key={"org_id": {"S": org}},
        UpdateExpression="SET authenticator_policy.denied_aaguids = :denied",
        ExpressionAttributeValues={":denied": {"L": [{"S": REFUSED_MODEL}]}},
    )
    # The stream function sees the policy change and recounts: bob no longer counts.
    deadline = time.monotonic() + 60
    while _status(keyward, admin)["members_compliant"] != 1:
        assert time.monotonic() < deadline, _status(keyward, admin)
        time.sleep(0.05)
    assert _until_recounted(keyward, admin)[-1] == (1, "done")
