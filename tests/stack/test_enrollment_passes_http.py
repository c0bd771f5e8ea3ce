"""Enrolment passes against the running local stack (``python -m devstack run``), over real HTTP.

The attacker holds a member's IdP password: under ``pass_required`` they can sign in as the
member but cannot register "their" first key without the pass an admin gave the member. Each
refusal is checked for its exact status and ``Code`` and for what it left in the stack's DynamoDB;
the race runs parallel registrations with one code.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.authenticator import SoftwareAuthenticator
from tests.support.stack_client import (
    PYNAMODB_TIME_FORMAT,
    Reply,
    StackClient,
    StackTables,
    unique_org,
)

CONTENDERS = 5
ROUNDS = 3
WRONG_CODE = "AAAAA-BBBBB-CCCCC-DDDDD"
INVALIDATION_TIMEOUT_SECONDS = 30.0


def refused(reply: Reply, status: int, code: str) -> None:
    assert (reply.status, reply.code) == (status, code), str(reply)
    assert isinstance(reply.body.get("Message"), str) and reply.body["Message"], str(reply)


def guarded_org(keyward: StackClient, org: str, *, enforce: bool = True) -> str:
    """An organization whose admin holds a key and requires passes (and enforces MFA); the admin's token."""
    admin = keyward.token(org=org, user="admin", admin=True)
    keyward.add_key(admin, name="Admin key")
    body: dict[str, Any] = {
        "enrollment": "pass_required",
        **({"enforced": True, "without_backup_credentials": True} if enforce else {}),
    }
    reply = keyward.call("PUT", "/org/mfa", token=admin, body=body)
    assert reply.status == 200 and reply.body["enrollment"] == "pass_required", str(reply)
    if enforce:
        # Wait for the stream function's clean-up, so that snapshots see no change of its own.
        deadline = time.monotonic() + INVALIDATION_TIMEOUT_SECONDS
        while (reply.body["invalidation"] or {}).get("state") != "done" and time.monotonic() < deadline:
            time.sleep(0.2)
            reply = keyward.call("GET", "/org/mfa", token=admin)
        assert reply.body["invalidation"]["state"] == "done", str(reply)
    return admin


def issue(keyward: StackClient, admin: str, user: str, **body: Any) -> dict[str, Any]:
    reply = keyward.call("POST", f"/org/members/{user}/enrollment-passes", token=admin, body=body)
    assert reply.status == 201, str(reply)
    return reply.body


def register_first(
    keyward: StackClient, token: str, *, code: str | None = None, authenticator: SoftwareAuthenticator | None = None
) -> Reply:
    """The whole registration ceremony, with the enrolment code when one is given."""
    options = keyward.registration_options(token)
    credential = (authenticator or SoftwareAuthenticator()).register(options.body["publicKey"], origin=keyward.origin)
    body: dict[str, Any] = {"challenge_id": options.body["challenge_id"], "name": "First key", "credential": credential}
    if code is not None:
        body["enrollment_code"] = code
    return keyward.call("POST", "/me/mfa/keys", token=token, body=body)


def passes(db: StackTables, org: str) -> dict[str, dict[str, Any]]:
    return {item["pass_id"]["S"]: item for item in db.query_org("enrollment-passes", org)}


def audit_actions(db: StackTables, org: str, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e["action"], e["details"]) for e in db.audit(org) if e["action"].startswith(prefix)]


def snapshot(db: StackTables, org: str) -> dict[str, Any]:
    return {**db.snapshot(org), "passes": passes(db, org)}


# --- the attacker with a member's IdP password ---------------------------------------------------


def test_an_idp_password_alone_no_longer_enrols_a_first_key(keyward, db):
    org = unique_org("pass-attacker")
    guarded_org(keyward, org)
    attacker = keyward.token(org=org, user="bob", state="registration_required")
    options = keyward.registration_options(attacker)
    assert options.body["enrollment_code_required"] is True
    before = snapshot(db, org)

    refused(register_first(keyward, attacker), 403, "EnrollmentPassRequired")
    refused(register_first(keyward, attacker, code=WRONG_CODE), 403, "InvalidEnrollmentPass")
    refused(register_first(keyward, attacker, code=""), 403, "EnrollmentPassRequired")

    assert snapshot(db, org) == before
    assert keyward.me(attacker).body["session"]["state"] == "registration_required"
    assert audit_actions(db, org, "enrollment_pass.") == [("enrollment_pass.refused", {"reason": "unknown"})]


def test_guessing_codes_is_throttled_per_member(keyward, db):
    org = unique_org("pass-guess")
    admin = guarded_org(keyward, org)
    attacker = keyward.token(org=org, user="bob", state="registration_required")
    genuine = issue(keyward, admin, "bob")
    for _ in range(5):
        refused(register_first(keyward, attacker, code=WRONG_CODE), 403, "InvalidEnrollmentPass")
    before = snapshot(db, org)
    # From now on even the right code is refused until the window passes.
    refused(register_first(keyward, attacker, code=genuine["code"]), 429, "TooManyAttempts")
    assert snapshot(db, org) == before
    assert passes(db, org)[genuine["id"]].get("used_at") is None
    assert len(audit_actions(db, org, "enrollment_pass.refused")) == 5
    # Another member's enrolment is not affected.
    carol = keyward.token(org=org, user="carol", state="registration_required")
    assert register_first(keyward, carol, code=issue(keyward, admin, "carol")["code"]).status == 201


def test_a_used_revoked_expired_or_someone_elses_pass_is_refused(keyward, db):
    org = unique_org("pass-refusals")
    admin = guarded_org(keyward, org)
    bob = keyward.token(org=org, user="bob", state="registration_required")
    carol = keyward.token(org=org, user="carol", state="registration_required")
    dave = keyward.token(org=org, user="dave", state="registration_required")

    for_carol = issue(keyward, admin, "carol")
    revoked = issue(keyward, admin, "bob")
    assert keyward.call("DELETE", f"/org/members/bob/enrollment-passes/{revoked['id']}", token=admin).status == 204
    expired = issue(keyward, admin, "bob")
    db.client.update_item(
        TableName=db.table("enrollment-passes"),
        Key={"org_id": {"S": org}, "pass_id": {"S": expired["id"]}},
        UpdateExpression="SET expires_at = :at",
        ExpressionAttributeValues={
            ":at": {"S": (datetime.now(UTC) - timedelta(seconds=1)).strftime(PYNAMODB_TIME_FORMAT)}
        },
    )
    used = issue(keyward, admin, "dave")
    assert register_first(keyward, dave, code=used["code"]).status == 201
    before = snapshot(db, org)

    for code in (for_carol["code"], revoked["code"], expired["code"], used["code"]):
        refused(register_first(keyward, bob, code=code), 403, "InvalidEnrollmentPass")

    assert snapshot(db, org) == before
    assert [d["reason"] for _, d in audit_actions(db, org, "enrollment_pass.refused")] == [
        "unknown",
        "revoked",
        "expired",
        "unknown",
    ]
    # carol's pass was not used up by bob's attempt.
    assert register_first(keyward, carol, code=for_carol["code"]).status == 201
    states = {
        p["id"]: p["state"]
        for p in keyward.call("GET", "/org/members/bob/enrollment-passes", token=admin).body["enrollment_passes"]
    }
    assert states == {revoked["id"]: "revoked", expired["id"]: "expired"}


def test_a_pass_of_another_organization_is_refused(keyward, db):
    ours, theirs = unique_org("pass-ours"), unique_org("pass-theirs")
    guarded_org(keyward, ours)
    their_admin = guarded_org(keyward, theirs)
    bob = keyward.token(org=ours, user="bob", state="registration_required")
    keyward.token(org=theirs, user="bob", state="registration_required")
    foreign = issue(keyward, their_admin, "bob")
    refused(register_first(keyward, bob, code=foreign["code"]), 403, "InvalidEnrollmentPass")
    assert passes(db, theirs)[foreign["id"]].get("used_at") is None


# --- the honest flow ------------------------------------------------------------------------------


def test_a_pass_enrols_the_members_first_key_once_and_only_its_hash_is_stored(keyward, db):
    org = unique_org("pass-honest")
    admin = guarded_org(keyward, org)
    bob = keyward.token(org=org, user="bob", state="registration_required")
    issued = issue(keyward, admin, "bob", lifetime_minutes=15)

    stored = passes(db, org)[issued["id"]]
    flat = repr(stored)
    assert issued["code"] not in flat and issued["code"].replace("-", "") not in flat
    expected = hashlib.sha256(b"keyward-enrollment-pass\x00" + issued["code"].replace("-", "").encode()).hexdigest()
    assert stored["code_hash"] == {"S": expected}
    assert stored["user_id"] == {"S": "bob"}
    listed = keyward.call("GET", "/org/members/bob/enrollment-passes", token=admin).body["enrollment_passes"]
    assert issued["code"] not in repr(listed) and [p["state"] for p in listed] == ["active"]

    reply = register_first(keyward, bob, code=issued["code"])
    assert reply.status == 201, str(reply)
    assert reply.body["session"]["state"] == "active"
    key_id = reply.body["key"]["id"]
    stored = passes(db, org)[issued["id"]]
    assert stored["used_key_id"] == {"S": key_id} and "used_at" in stored
    assert ("enrollment_pass.used", {"key_id": key_id}) in audit_actions(db, org, "enrollment_pass.")
    refused(
        keyward.call("DELETE", f"/org/members/bob/enrollment-passes/{issued['id']}", token=admin),
        409,
        "EnrollmentPassUsed",
    )

    # The code is spent: bob's next session cannot use it to enrol again after losing his keys
    # (his last, deleted once enforcement is relaxed: under enforcement it stays).
    relaxed = keyward.call("PUT", "/org/mfa", token=admin, body={"enforced": False})
    assert relaxed.status == 200, str(relaxed)
    assert keyward.call("DELETE", f"/org/members/bob/mfa/keys/{key_id}", token=admin).status == 204
    again = keyward.token(org=org, user="bob")
    refused(register_first(keyward, again, code=issued["code"]), 403, "InvalidEnrollmentPass")


def test_a_member_who_lost_every_key_gets_back_in_with_a_pass(keyward, db):
    org = unique_org("pass-lost")
    admin = guarded_org(keyward, org, enforce=False)
    bob = keyward.token(org=org, user="bob")
    assert register_first(keyward, bob, code=issue(keyward, admin, "bob")["code"]).status == 201
    assert (
        keyward.call("PUT", "/org/mfa", token=admin, body={"enforced": True, "without_backup_credentials": True}).status
        == 200
    )
    [lost] = [item["key_id"]["S"] for item in db.query_org("keys", org) if item["user_id"]["S"] == "bob"]

    # bob lost his key, his last: under enforcement it stays, whoever deletes it. The admin
    # offboards him; signed in again with only his IdP password, he is stuck at registration.
    refused(keyward.call("DELETE", f"/org/members/bob/mfa/keys/{lost}", token=admin), 409, "LastKeyRequired")
    assert keyward.call("DELETE", "/org/members/bob", token=admin).status == 204
    bob = keyward.token(org=org, user="bob", state="registration_required")
    refused(keyward.call("GET", "/me/mfa/keys", token=bob), 403, "RegistrationRequired")
    refused(register_first(keyward, bob), 403, "EnrollmentPassRequired")

    # The admin gives him a pass; he registers a new key and is in.
    replacement = SoftwareAuthenticator()
    reply = register_first(keyward, bob, code=issue(keyward, admin, "bob")["code"], authenticator=replacement)
    assert reply.status == 201, str(reply)
    assert reply.body["session"]["state"] == "active"
    # The session continues under the token registering handed out; the waiting one has ended.
    refused(keyward.call("GET", "/me/mfa/keys", token=bob), 401, "InvalidToken")
    assert keyward.call("GET", "/me/mfa/keys", token=reply.body["token"]).status == 200
    # And the new key is what passes his next login.
    assert keyward.mfa_login(org=org, user="bob", authenticator=replacement)


def test_admin_endpoints_check_role_organization_and_member(keyward, db):
    org, other = unique_org("pass-admin"), unique_org("pass-other")
    admin = guarded_org(keyward, org, enforce=False)
    bob = keyward.token(org=org, user="bob")
    issued = issue(keyward, admin, "bob")
    path = f"/org/members/bob/enrollment-passes/{issued['id']}"
    member = keyward.token(org=org, user="carol")
    outsider = keyward.token(org=other, user="eve", admin=True)
    keyward.token(org=other, user="bob")
    before = snapshot(db, org)

    refused(keyward.call("POST", "/org/members/bob/enrollment-passes", token=member, body={}), 403, "AdminRequired")
    refused(keyward.call("GET", "/org/members/bob/enrollment-passes", token=member), 403, "AdminRequired")
    refused(keyward.call("DELETE", path, token=member), 403, "AdminRequired")
    refused(keyward.call("PUT", "/org/mfa", token=member, body={"enrollment": "open"}), 403, "AdminRequired")
    refused(keyward.call("DELETE", path, token=outsider), 404, "EnrollmentPassNotFound")
    assert keyward.call("GET", "/org/members/bob/enrollment-passes", token=outsider).body == {"enrollment_passes": []}
    refused(keyward.call("POST", "/org/members/nobody/enrollment-passes", token=admin, body={}), 404, "MemberNotFound")
    refused(
        keyward.call("DELETE", f"/org/members/carol/enrollment-passes/{issued['id']}", token=admin),
        404,
        "EnrollmentPassNotFound",
    )
    refused(
        keyward.call("POST", "/org/members/bob/enrollment-passes", token=admin, body={"lifetime_minutes": 9}),
        400,
        "MalformedRequest",
    )
    refused(keyward.call("PUT", "/org/mfa", token=admin, body={"enrollment": "closed"}), 400, "MalformedRequest")

    assert snapshot(db, org) == before
    assert register_first(keyward, bob, code=issued["code"]).status == 201


# --- races ----------------------------------------------------------------------------------------


def test_parallel_registrations_with_one_code_store_one_key(keyward, db):
    org = unique_org("pass-race")
    admin = guarded_org(keyward, org)
    for round_number in range(1, ROUNDS + 1):
        user = f"member{round_number}"
        # The member and an attacker with the same IdP password, each in sessions of their own.
        tokens = [keyward.token(org=org, user=user, state="registration_required") for _ in range(CONTENDERS)]
        issued = issue(keyward, admin, user)
        prepared = []
        for token in tokens:
            options = keyward.registration_options(token)
            credential = SoftwareAuthenticator().register(options.body["publicKey"], origin=keyward.origin)
            prepared.append(
                (
                    token,
                    {
                        "challenge_id": options.body["challenge_id"],
                        "name": "Key",
                        "credential": credential,
                        "enrollment_code": issued["code"],
                    },
                )
            )

        replies = keyward.in_parallel(
            [
                lambda token=token, body=body: keyward.call("POST", "/me/mfa/keys", token=token, body=body)
                for token, body in prepared
            ]
        )

        outcome = [str(reply) for reply in replies]
        assert [reply.status for reply in replies].count(201) == 1, f"round {round_number}: {outcome}"
        for reply in replies:
            if reply.status != 201:
                assert (reply.status, reply.code) in {
                    (403, "InvalidEnrollmentPass"),
                    (409, "ConcurrentChange"),
                    (503, "StorageUnavailable"),
                }, f"round {round_number}: {outcome}"
        [winner] = [reply.body["key"]["id"] for reply in replies if reply.status == 201]
        stored = [item["key_id"]["S"] for item in db.query_org("keys", org) if item["user_id"]["S"] == user]
        assert stored == [winner], f"round {round_number}: {outcome}"
        assert db.get("members", org_id=org, user_id=user)["key_count"]["N"] == "1"
        assert passes(db, org)[issued["id"]]["used_key_id"] == {"S": winner}
        used = [d for action, d in audit_actions(db, org, "enrollment_pass.used")]
        assert used.count({"key_id": winner}) == 1 and len(used) == round_number
