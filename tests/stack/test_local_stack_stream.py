"""The organizations table's stream on the running local stack (``python -m devstack run``): the
stream function must see every accepted change of the enforcement flag, whatever came before it —
a refused enforcement, or an operator flipping the flag in the table behind the API's back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.support.stack_client import StackTables, session_id_of, unique_org

# The stream is polled every 0.25 s; a handful of sessions is deleted well within this.
STREAM_TIMEOUT_SECONDS = 10.0


def eventually(what: str, check: Callable[[], Any]) -> Any:
    """``check()``'s first truthy answer within the stream's timeout, or a failure naming ``what``."""
    deadline = time.monotonic() + STREAM_TIMEOUT_SECONDS
    while True:
        answer = check()
        if answer or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert answer, f"{STREAM_TIMEOUT_SECONDS}s on: {what}"
    return answer


def session_ids(db: StackTables, org: str) -> set[str]:
    return {item["session_id"]["S"] for item in db.scan_org("sessions-v2", org)}


def invalidation(db: StackTables, org: str) -> dict[str, Any]:
    """The organization's stored invalidation, as plain values."""
    stored = (db.get("orgs", org_id=org) or {}).get("invalidation", {}).get("M", {})
    return {name: next(iter(value.values())) for name, value in stored.items()}


def finished(db: StackTables, org: str, *, generation: int) -> bool:
    """Whether the invalidation of this enforcement generation is done, from one read of the item:
    two reads could see the last one done and the next one's generation just recorded."""
    found = invalidation(db, org)
    return found.get("state") == "done" and int(found.get("generation", 0)) == generation


def set_flag(db: StackTables, org: str, value: dict[str, Any]) -> None:
    """An operator editing the organization's item in the AWS console: only the flag changes."""
    db.client.update_item(
        TableName=db.table("orgs"),
        Key={"org_id": {"S": org}},
        UpdateExpression="SET mfa_enforced = :flag",
        ConditionExpression="attribute_exists(org_id)",
        ExpressionAttributeValues={":flag": value},
    )


# --- a refused enforcement does not stop the stream -------------------------------------------


def test_the_stream_function_still_ends_sessions_after_a_refused_enforcement(keyward, db):
    refused_org, org = unique_org("refused"), unique_org("accepted")
    keyless_admin = keyward.token(org=refused_org, user="admin", admin=True)
    refusal = keyward.call("PUT", "/org/mfa", token=keyless_admin, body={"enforced": True})
    assert (refusal.status, refusal.code) == (409, "SecurityKeyRequired"), str(refusal)
    # The refused transaction left nothing behind: no flag, no invalidation.
    assert "invalidation" not in db.get("orgs", org_id=refused_org), db.get("orgs", org_id=refused_org)

    member = keyward.token(org=org, user="bob")
    admin = keyward.enforced_org(org)
    eventually("the enforcement's clean-up to finish", lambda: invalidation(db, org).get("state") == "done")
    assert session_id_of(member) not in session_ids(db, org)
    assert session_ids(db, org) == {session_id_of(admin)}
    assert int(invalidation(db, org)["sessions_ended"]) == 1  # bob's; the admin's enforcing session is spared

    # And again after a second refusal, in between two accepted enforcements of other organizations.
    refusal = keyward.call("PUT", "/org/mfa", token=keyless_admin, body={"enforced": True})
    assert (refusal.status, refusal.code) == (409, "SecurityKeyRequired"), str(refusal)
    later = unique_org("later")
    member = keyward.token(org=later, user="bob")
    keyward.enforced_org(later)
    eventually("the later enforcement's clean-up to finish", lambda: invalidation(db, later).get("state") == "done")
    assert session_id_of(member) not in session_ids(db, later)


# --- every switch of the flag from off to on is an enforcement --------------------------------


def test_an_operators_re_flip_in_the_console_ends_the_sessions_that_started_without_enforcement(keyward, db):
    org = unique_org("reflip")
    admin = keyward.enforced_org(org)
    eventually("the API enforcement's clean-up to finish", lambda: invalidation(db, org).get("state") == "done")

    set_flag(db, org, {"BOOL": False})  # the operator relaxes it in the console
    stolen = keyward.token(org=org, user="bob", state="active")  # keyless: nothing asks for a key now
    assert keyward.call("GET", "/me", token=stolen).status == 200
    before = db.get("orgs", org_id=org)

    set_flag(db, org, {"BOOL": True})  # ... and switches it on again
    ended = keyward.call("GET", "/me", token=stolen)
    assert (ended.status, ended.code) in ((401, "SessionEndedByEnforcement"), (401, "InvalidToken")), str(ended)
    assert keyward.call("POST", "/me/mfa/keys/options", token=stolen).status == 401

    eventually(
        "the operator's enforcement to be recorded and its clean-up to finish",
        lambda: finished(db, org, generation=int(before["enforcement_generation"]["N"]) + 1),
    )
    org_item = db.get("orgs", org_id=org)
    assert org_item["enforced_by"]["S"] == "operator"
    # No enforcing session is spared: the admin's ended too, and bob must register a key.
    assert session_ids(db, org) == set()
    assert keyward.call("GET", "/me", token=admin).status == 401
    assert keyward.login(org=org, user="bob").body["state"] == "registration_required"
    assert [
        event["details"].get("generation") for event in db.audit(org) if event["action"] == "enforcement.enabled"
    ] == ["1", "2"]


def test_a_flag_of_the_wrong_type_is_read_as_enforced_and_its_record_fails(keyward, db, local_stack):
    org = unique_org("typo")
    _, admin_key, _ = keyward.member_with_key(org=org, user="admin", admin=True)
    stolen = keyward.token(org=org, user="bob", state="active")
    log_offset = local_stack.log.stat().st_size

    set_flag(db, org, {"S": "true"})

    # Requests of the organization go on — no 500 — reading the flag as enforced.
    ended = keyward.call("GET", "/me", token=stolen)
    assert (ended.status, ended.code) == (401, "SessionEndedByEnforcement"), str(ended)
    assert keyward.login(org=org, user="bob").body["state"] == "registration_required"
    # The stream function fails the record and says why (on AWS it goes to the dead-letter queue).
    eventually(
        "the stream function to report the malformed flag",
        lambda: (
            "mfa_enforced was set to {'S': 'true'}"
            in local_stack.log.read_bytes()[log_offset:].decode(errors="replace")
        ),
    )
    assert "invalidation" not in db.get("orgs", org_id=org)

    # An admin repairs it through the API: relaxing writes a BOOL.
    admin = keyward.mfa_login(org=org, user="admin", authenticator=admin_key, admin=True)
    relaxed = keyward.call("PUT", "/org/mfa", token=admin, body={"enforced": False})
    assert (relaxed.status, relaxed.body.get("enforced")) == (200, False), str(relaxed)
    assert db.get("orgs", org_id=org)["mfa_enforced"] == {"BOOL": False}
    # Relaxed by an admin, nothing was enforced: the sessions it held back go on.
    assert keyward.call("GET", "/me", token=stolen).status == 200
