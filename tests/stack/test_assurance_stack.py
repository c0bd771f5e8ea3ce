"""An attacker who holds a member's IdP password, played against the running local stack over HTTP.

Each story logs in as the attacker would, tries to get past the second factor, and checks the
exact refusal and that nothing changed in the stack's DynamoDB. Time passing (a step-up window
running out, a session left idle) is played by moving the session's stored timestamps back, as
the only clock the stack's process has is the machine's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.authenticator import SoftwareAuthenticator
from tests.support.stack_client import (
    PYNAMODB_TIME_FORMAT,
    Reply,
    StackClient,
    StackTables,
    session_id_of,
    unique_org,
)

REAUTH_WINDOW = timedelta(seconds=900)
IDLE_TIMEOUT = timedelta(seconds=3600)
RACE_ROUNDS = 3


def refused(reply: Reply, status: int, code: str) -> None:
    assert (reply.status, reply.code) == (status, code), str(reply)
    assert isinstance(reply.body.get("Message"), str) and reply.body["Message"], str(reply)


def audit_keys(db: StackTables, org: str) -> set[str]:
    return {event["event_key"] for event in db.audit(org)}


def new_events(db: StackTables, org: str, before: set[str]) -> list[tuple[str, dict[str, Any]]]:
    return [(event["action"], event["details"]) for event in db.audit(org) if event["event_key"] not in before]


def session_item(db: StackTables, org: str, token: str) -> dict[str, Any] | None:
    return db.get("sessions-v2", session_id=session_id_of(token))


def move_back(db: StackTables, org: str, token: str, attribute: str, by: timedelta) -> None:
    """Make a stored session time ``by`` older than now: time passing, as far as keyward can tell.

    A session that started earlier belongs to a member (or backup credentials) created earlier
    still: a session older than its member is one of an offboarded member's.
    """
    moment = datetime.now(UTC) - by
    stamp = {":at": {"S": moment.strftime(PYNAMODB_TIME_FORMAT)}}
    key = {"session_id": {"S": session_id_of(token)}}
    db.client.update_item(
        TableName=db.table("sessions-v2"),
        Key=key,
        UpdateExpression=f"SET {attribute} = :at",
        ConditionExpression="attribute_exists(session_id)",
        ExpressionAttributeValues=stamp,
    )
    if attribute != "created_at":
        return
    user_id = db.client.get_item(TableName=db.table("sessions-v2"), Key=key, ConsistentRead=True)["Item"]["user_id"][
        "S"
    ]
    earlier = {":at": {"S": (moment - timedelta(seconds=1)).strftime(PYNAMODB_TIME_FORMAT)}}
    if user_id.startswith("backup:"):
        owner = ("backup-credentials", {"key_id": {"S": user_id.removeprefix("backup:")}})
    else:
        owner = ("members", {"org_id": {"S": org}, "user_id": {"S": user_id}})
    db.client.update_item(
        TableName=db.table(owner[0]),
        Key=owner[1],
        UpdateExpression="SET created_at = :at",
        ExpressionAttributeValues=earlier,
    )


def step_up(keyward: StackClient, token: str, authenticator: SoftwareAuthenticator) -> Reply:
    options = keyward.call("POST", "/auth/reauth/options", token=token)
    assert options.status == 200, str(options)
    credential = authenticator.authenticate(options.body["publicKey"], origin=keyward.origin)
    return keyward.call(
        "POST",
        "/auth/reauth/verify",
        token=token,
        body={"challenge_id": options.body["challenge_id"], "credential": credential},
    )


def keys_of(db: StackTables, org: str, user: str) -> set[str]:
    return {item["key_id"]["S"] for item in db.query_org("keys", org) if item["user_id"]["S"] == user}


# --- bypass 1: a stale registration_required session enrols after the member already has a key ----


def test_a_stale_registration_session_cannot_register_once_the_member_holds_a_key(keyward, db):
    org = unique_org("stale-registration")
    keyward.enforced_org(org)
    # The attacker signs in with bob's password before bob enrols, and prepares a registration.
    attacker = keyward.token(org=org, user="bob", state="registration_required")
    prepared = keyward.registration_options(attacker).body
    attackers_key = SoftwareAuthenticator()
    credential = attackers_key.register(prepared["publicKey"], origin=keyward.origin)

    bob = keyward.token(org=org, user="bob", state="registration_required")
    registered = keyward.add_key(bob, name="Bob's key")
    assert registered.body["session"]["state"] == "active"
    bob = registered.body["token"]
    before, logged = db.snapshot(org), audit_keys(db, org)

    refused(
        keyward.register(attacker, prepared["challenge_id"], credential, name="Attacker"), 401, "SessionEndedByNewKey"
    )
    refused(keyward.call("POST", "/me/mfa/keys/options", token=attacker), 401, "SessionEndedByNewKey")
    refused(keyward.call("GET", "/me", token=attacker), 401, "SessionEndedByNewKey")

    assert db.snapshot(org) == before
    assert new_events(db, org, logged) == []
    assert keys_of(db, org, "bob") == {registered.body["key"]["id"]}
    # The attacker's key passes no MFA check: it was never registered.
    pending = keyward.pending(org=org, user="bob")
    assertion = attackers_key.authenticate({**pending.public_key, "allowCredentials": []}, origin=keyward.origin)
    refused(keyward.mfa_verify(pending.token, pending.challenge_id, assertion), 401, "UnknownCredential")
    assert keyward.me(bob).body["session"]["state"] == "active"


def test_registering_activates_a_waiting_session_under_a_new_token_with_the_key_as_its_verified_key(keyward, db):
    org = unique_org("activation")
    keyward.enforced_org(org)
    waiting = keyward.token(org=org, user="bob", state="registration_required")

    registered = keyward.add_key(waiting, name="Bob's key")

    token = registered.body["token"]
    assert registered.body["session"] == {"state": "active"} and token != waiting
    refused(keyward.call("GET", "/me", token=waiting), 401, "InvalidToken")
    assert keyward.me(token).body["session"]["state"] == "active"
    stored = session_item(db, org, token)
    assert stored["state"]["S"] == "active"
    assert stored["verified_key_id"]["S"] == registered.body["key"]["id"]
    assert "key_checked_at" in stored
    # An active session registering another key keeps its token.
    second = keyward.add_key(token, name="Spare")
    assert second.body["token"] is None and keyward.me(token).status == 200


@pytest.mark.parametrize("round_", range(RACE_ROUNDS))
def test_two_waiting_sessions_registering_at_once_activate_at_most_one(keyward, db, round_):
    org = unique_org("registration-race")
    keyward.enforced_org(org)
    tokens = [keyward.token(org=org, user="bob", state="registration_required") for _ in range(2)]
    prepared = []
    for token in tokens:
        options = keyward.registration_options(token).body
        prepared.append(
            (
                token,
                options["challenge_id"],
                SoftwareAuthenticator().register(options["publicKey"], origin=keyward.origin),
            )
        )

    replies = keyward.in_parallel(
        [
            lambda token=token, challenge_id=challenge_id, credential=credential: keyward.register(
                token, challenge_id, credential, name="Racing key"
            )
            for token, challenge_id, credential in prepared
        ]
    )

    outcome = [str(reply) for reply in replies]
    winners = [reply for reply in replies if reply.status == 201]
    losers = [reply for reply in replies if reply.status != 201]
    assert len(winners) == 1 and len(losers) == 1, outcome
    assert (losers[0].status, losers[0].code) in {(401, "SessionEndedByNewKey"), (409, "AlreadyEnrolled")}, outcome
    assert keys_of(db, org, "bob") == {winners[0].body["key"]["id"]}
    assert db.get("members", org_id=org, user_id="bob")["key_count"]["N"] == "1"
    states = sorted(item["state"]["S"] for item in db.scan_org("sessions-v2", org) if item["user_id"]["S"] == "bob")
    assert states == ["active", "registration_required"], outcome


# --- bypass 2: deleting the key a session registered ends that session --------------------------------


@pytest.mark.parametrize("deleted_by", ["member", "admin"])
def test_deleting_the_key_a_session_registered_ends_that_session(keyward, db, deleted_by):
    """A session's proof is the key it last proved: registering a key is such a proof."""
    org = unique_org("registered-key-deleted")
    admin = keyward.enforced_org(org)
    waiting = keyward.token(org=org, user="bob", state="registration_required")
    first_key = SoftwareAuthenticator()
    first = keyward.add_key(waiting, first_key, name="First key")
    registering = first.body["token"]
    second_key_id = keyward.add_key(registering, name="Second key").body["key"]["id"]

    if deleted_by == "admin":
        reply = keyward.call("DELETE", f"/org/members/bob/mfa/keys/{second_key_id}", token=admin)
    else:
        elsewhere = keyward.mfa_login(org=org, user="bob", authenticator=first_key)
        reply = keyward.call("DELETE", f"/me/mfa/keys/{second_key_id}", token=elsewhere)
    assert reply.status == 204, str(reply)

    refused(keyward.call("GET", "/me", token=registering), 401, "InvalidToken")
    assert session_item(db, org, registering) is None
    assert second_key_id not in keys_of(db, org, "bob")


# --- bypass 3: sessions from before enrolment lose their power ---------------------------------------


def test_a_stolen_session_from_before_enrolment_ends_when_the_member_enrols(keyward, db):
    org = unique_org("stolen-before-enrolment")
    stolen = keyward.token(org=org, user="bob")  # no enforcement: active, no key
    # The attacker prepares a registration of their own key while the session is fresh.
    prepared = keyward.registration_options(stolen).body
    credential = SoftwareAuthenticator().register(prepared["publicKey"], origin=keyward.origin)

    bob = keyward.token(org=org, user="bob")
    bobs_key_id = keyward.add_key(bob, name="Bob's key").body["key"]["id"]
    before, logged = db.snapshot(org), audit_keys(db, org)

    refused(keyward.call("DELETE", "/me/mfa", token=stolen), 401, "SessionEndedByNewKey")
    refused(
        keyward.register(stolen, prepared["challenge_id"], credential, name="Attacker"), 401, "SessionEndedByNewKey"
    )
    refused(keyward.call("DELETE", f"/me/mfa/keys/{bobs_key_id}", token=stolen), 401, "SessionEndedByNewKey")
    refused(keyward.call("GET", "/me/mfa/keys", token=stolen), 401, "SessionEndedByNewKey")

    assert db.snapshot(org) == before
    assert new_events(db, org, logged) == []
    assert keys_of(db, org, "bob") == {bobs_key_id}
    # Bob's own session, the one that registered, goes on.
    assert keyward.key_ids(bob) == [bobs_key_id]


def test_enrolling_again_ends_the_sessions_that_hold_no_proof_of_a_key_the_member_holds(keyward, db):
    org = unique_org("checked-survives")
    first_key = SoftwareAuthenticator()
    registered_first, _, first_key_id = keyward.member_with_key(org=org, user="bob", authenticator=first_key)
    bob = keyward.mfa_login(org=org, user="bob", authenticator=first_key)
    assert keyward.call("DELETE", "/me/mfa", token=bob).status == 204
    unchecked = keyward.token(org=org, user="bob")  # no key any more: active without a check

    keyward.add_key(bob, name="New key")

    refused(keyward.call("GET", "/me", token=unchecked), 401, "SessionEndedByNewKey")
    assert session_item(db, org, unchecked) is not None  # ended at request time; removed later
    # The session that registered the first key proved that key, which disabling MFA deleted:
    # it ended with it.
    refused(keyward.call("GET", "/me", token=registered_first), 401, "InvalidToken")
    assert keyward.me(bob).body["mfa"]["key_count"] == 1
    assert first_key_id not in keys_of(db, org, "bob")


# --- a throwaway key: registering proves a key only while the member holds it ------------------------


def test_a_throwaway_key_does_not_make_a_stolen_session_outlive_the_members_enrolment(keyward, db):
    """The attacker signs in as carol, a keyless admin, registers a key of their own and deletes it
    again; then carol enrols from her own session. The attacker's session proved only a key carol
    no longer holds: it ends with her first key like any session that never proved one."""
    org = unique_org("throwaway-key")
    stolen = keyward.token(org=org, user="carol", admin=True)
    throwaway = keyward.add_key(stolen, name="Throwaway").body["key"]["id"]
    assert keyward.call("DELETE", f"/me/mfa/keys/{throwaway}", token=stolen).status == 204
    carol = keyward.token(org=org, user="carol", admin=True)
    carols_key = keyward.add_key(carol, name="Carol's key").body["key"]["id"]
    before, logged = db.snapshot(org), audit_keys(db, org)

    refused(keyward.call("GET", "/me", token=stolen), 401, "SessionEndedByNewKey")
    refused(keyward.call("POST", "/me/mfa/keys/options", token=stolen), 401, "SessionEndedByNewKey")
    refused(keyward.call("POST", "/org/backup-credentials", token=stolen), 401, "SessionEndedByNewKey")
    refused(keyward.call("DELETE", f"/me/mfa/keys/{carols_key}", token=stolen), 401, "SessionEndedByNewKey")

    assert db.snapshot(org) == before
    assert new_events(db, org, logged) == []
    assert keys_of(db, org, "carol") == {carols_key}


def test_registering_and_deleting_keys_does_not_extend_a_keyless_sessions_window(keyward, db):
    """A keyless session's step-up window counts from its IdP login: a key registered and deleted
    again leaves no proof behind, so the window it gave closes with the key."""
    org = unique_org("throwaway-window")
    stolen = keyward.token(org=org, user="carol", admin=True)
    move_back(db, org, stolen, "created_at", REAUTH_WINDOW - timedelta(seconds=60))
    throwaway = keyward.add_key(stolen, name="Throwaway").body["key"]["id"]
    assert keyward.call("DELETE", f"/me/mfa/keys/{throwaway}", token=stolen).status == 204
    move_back(db, org, stolen, "created_at", REAUTH_WINDOW + timedelta(seconds=5))
    before = db.snapshot(org)

    refused(keyward.call("POST", "/me/mfa/keys/options", token=stolen), 403, "ReauthenticationRequired")
    refused(keyward.call("POST", "/org/backup-credentials", token=stolen), 403, "ReauthenticationRequired")
    refused(
        keyward.call("PUT", "/org/mfa", token=stolen, body={"enrollment": "pass_required"}),
        403,
        "ReauthenticationRequired",
    )
    assert db.snapshot(org) == before
    assert keyward.me(stolen).body["mfa"]["key_count"] == 0


def test_a_rogue_key_an_admin_removes_takes_the_session_that_registered_it_along(keyward, db):
    """Under enforcement with a grace period, the attacker (active, keyless) registers a rogue key.
    It is bob's last, which stays under enforcement whoever deletes it: the admin offboards bob.
    The session that registered it ends with it: it neither survives bob's real enrolment nor
    adds another key."""
    org = unique_org("rogue-key")
    admin = keyward.enforced_org(org)
    grace = keyward.call("PUT", "/org/mfa", token=admin, body={"enforced": True, "grace_period_hours": 24})
    assert grace.status == 200, str(grace)
    stolen = keyward.token(org=org, user="bob")
    rogue = keyward.add_key(stolen, name="Rogue").body["key"]["id"]
    refused(keyward.call("DELETE", f"/org/members/bob/mfa/keys/{rogue}", token=admin), 409, "LastKeyRequired")
    assert keyward.call("DELETE", "/org/members/bob", token=admin).status == 204

    refused(keyward.call("GET", "/me", token=stolen), 401, "InvalidToken")
    assert session_item(db, org, stolen) is None
    bob = keyward.token(org=org, user="bob")
    bobs_key = keyward.add_key(bob, name="Bob's key").body["key"]["id"]
    before = db.snapshot(org)
    refused(keyward.call("POST", "/me/mfa/keys/options", token=stolen), 401, "InvalidToken")
    assert db.snapshot(org) == before
    assert keys_of(db, org, "bob") == {bobs_key}


# --- step-up -----------------------------------------------------------------------------------------


def test_an_admin_action_long_after_the_key_check_needs_a_step_up(keyward, db):
    org = unique_org("step-up")
    admin_key = SoftwareAuthenticator()
    keyward.member_with_key(org=org, user="admin", admin=True, authenticator=admin_key)
    admin = keyward.mfa_login(org=org, user="admin", admin=True, authenticator=admin_key)
    move_back(db, org, admin, "key_checked_at", REAUTH_WINDOW + timedelta(seconds=5))
    before, logged = db.snapshot(org), audit_keys(db, org)

    for method, path, body in [
        ("PUT", "/org/mfa", {"enforced": True}),
        ("POST", "/org/backup-credentials", None),
        ("DELETE", "/org/members/bob/sessions", None),
        ("POST", "/me/mfa/keys/options", None),
        ("DELETE", "/me/mfa", None),
    ]:
        refused(keyward.call(method, path, token=admin, body=body), 403, "ReauthenticationRequired")
    # Reading and renaming need none.
    assert keyward.call("GET", "/org/mfa", token=admin).status == 200
    [key_id] = keyward.key_ids(admin)
    assert keyward.call("PATCH", f"/me/mfa/keys/{key_id}", token=admin, body={"name": "Renamed"}).status == 200
    assert db.snapshot(org)[org]["org"] == before[org]["org"]
    assert db.snapshot(org)[org]["sessions"] == before[org]["sessions"]
    assert [action for action, _ in new_events(db, org, logged)] == ["key.renamed"]

    stepped = step_up(keyward, admin, admin_key)
    assert stepped.status == 200, str(stepped)
    assert set(stepped.body) == {"key_checked_at", "reauth_until"}
    enforced = keyward.call("PUT", "/org/mfa", token=admin, body={"enforced": True, "without_backup_credentials": True})
    assert enforced.status == 200 and enforced.body["enforced"] is True, str(enforced)
    assert ("reauth.succeeded", {"session_id": session_id_of(admin)}) in new_events(db, org, logged)
    assert db.sign_count(org, key_id) == admin_key.sign_count


def test_a_step_up_is_a_ceremony_of_its_own_and_refusals_are_audited(keyward, db):
    org = unique_org("step-up-kinds")
    bob_key = SoftwareAuthenticator()
    _, _, key_id = keyward.member_with_key(org=org, user="bob", authenticator=bob_key)
    pending = keyward.pending(org=org, user="bob")  # an MFA challenge of this session, left unused
    again = keyward.mfa_options(pending.token).body
    bob = keyward.mfa_verify(
        pending.token, again["challenge_id"], bob_key.authenticate(again["publicKey"], origin=keyward.origin)
    ).body["token"]
    logged, count = audit_keys(db, org), db.sign_count(org, key_id)

    # The MFA login's challenge cannot serve a step-up of the same session.
    mfa_assertion = bob_key.authenticate(pending.public_key, origin=keyward.origin)
    refused(
        keyward.call(
            "POST",
            "/auth/reauth/verify",
            token=bob,
            body={"challenge_id": pending.challenge_id, "credential": mfa_assertion},
        ),
        401,
        "ChallengeMismatch",
    )
    # A replayed step-up is refused; so is a key whose counter went backwards.
    options = keyward.call("POST", "/auth/reauth/options", token=bob).body
    assertion = bob_key.authenticate(options["publicKey"], origin=keyward.origin)
    body = {"challenge_id": options["challenge_id"], "credential": assertion}
    assert keyward.call("POST", "/auth/reauth/verify", token=bob, body=body).status == 200
    refused(keyward.call("POST", "/auth/reauth/verify", token=bob, body=body), 401, "ChallengeNotFound")
    bob_key.sign_count = 0
    refused(step_up(keyward, bob, bob_key), 401, "SignCountRegression")

    events = new_events(db, org, logged)
    assert [(action, details.get("reason")) for action, details in events if action.startswith("reauth.")] == [
        ("reauth.failed", "ChallengeMismatch"),
        ("reauth.succeeded", None),
        ("reauth.failed", "ChallengeNotFound"),
        ("reauth.failed", "SignCountRegression"),
    ]
    assert db.sign_count(org, key_id) == count + 2  # the one step-up that passed

    # And the other way round: a step-up challenge cannot pass an MFA login of the same session.
    options = keyward.call("POST", "/auth/reauth/options", token=bob).body
    db.client.update_item(
        TableName=db.table("sessions-v2"),
        Key={"session_id": {"S": session_id_of(bob)}},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues={":s": {"S": "mfa_required"}},
    )
    bob_key.sign_count = 100
    refused(
        keyward.mfa_verify(
            bob, options["challenge_id"], bob_key.authenticate(options["publicKey"], origin=keyward.origin)
        ),
        401,
        "ChallengeMismatch",
    )
    assert keyward.me(bob).body["session"]["state"] == "mfa_required"


def test_a_member_without_keys_acts_only_soon_after_signing_in(keyward, db):
    org = unique_org("keyless-window")
    bob = keyward.token(org=org, user="bob")
    move_back(db, org, bob, "created_at", REAUTH_WINDOW + timedelta(seconds=5))
    before = db.snapshot(org)

    refused(keyward.call("POST", "/me/mfa/keys/options", token=bob), 403, "ReauthenticationRequired")
    refused(keyward.call("POST", "/auth/reauth/options", token=bob), 409, "SecurityKeyRequired")
    assert db.snapshot(org) == before
    # A fresh login can.
    keyward.add_key(keyward.token(org=org, user="bob"))


def test_a_backup_session_counts_from_its_login(keyward, db):
    org = unique_org("backup-window")
    admin = keyward.token(org=org, user="admin", admin=True)
    created = keyward.call("POST", "/org/backup-credentials", token=admin)
    assert created.status == 201, str(created)
    login = keyward.call(
        "POST", "/auth/backup-login", body={"key_id": created.body["key_id"], "secret": created.body["secret"]}
    )
    assert login.status == 200, str(login)
    backup = login.body["token"]
    assert keyward.call("DELETE", "/org/members/admin/sessions", token=backup).status == 204

    move_back(db, org, backup, "created_at", REAUTH_WINDOW + timedelta(seconds=5))
    refused(keyward.call("PUT", "/org/mfa", token=backup, body={"enforced": False}), 403, "ReauthenticationRequired")
    refused(keyward.call("POST", "/auth/reauth/options", token=backup), 403, "NotForBackupSessions")
    assert keyward.call("GET", "/org/mfa", token=backup).status == 200


# --- idle sessions, backup eligibility, audit ------------------------------------------------------


def test_an_idle_session_ends(keyward, db):
    org = unique_org("idle")
    bob = keyward.token(org=org, user="bob")
    move_back(db, org, bob, "last_seen_at", IDLE_TIMEOUT - timedelta(seconds=30))
    assert keyward.call("GET", "/me", token=bob).status == 200  # in use: refreshed now

    move_back(db, org, bob, "last_seen_at", IDLE_TIMEOUT + timedelta(seconds=1))
    refused(keyward.call("GET", "/me", token=bob), 401, "SessionIdle")
    refused(keyward.call("GET", "/me/mfa/keys", token=bob), 401, "SessionIdle")


def test_a_key_whose_backup_eligibility_changed_is_refused(keyward, db):
    org = unique_org("backup-eligibility")
    bob_key = SoftwareAuthenticator(backup_eligible=False)
    _, _, key_id = keyward.member_with_key(org=org, user="bob", authenticator=bob_key)
    pending = keyward.pending(org=org, user="bob")
    before, count = db.snapshot(org), db.sign_count(org, key_id)

    bob_key.backup_eligible = True
    assertion = bob_key.authenticate(pending.public_key, origin=keyward.origin)
    refused(keyward.mfa_verify(pending.token, pending.challenge_id, assertion), 401, "BackupEligibilityChanged")

    assert db.snapshot(org) == before and db.sign_count(org, key_id) == count
    assert keyward.me(pending.token).body["session"]["state"] == "mfa_required"


def test_logout_is_audited(keyward, db):
    org = unique_org("logout")
    bob = keyward.token(org=org, user="bob")
    logged = audit_keys(db, org)

    assert keyward.call("POST", "/auth/logout", token=bob).status == 204

    assert new_events(db, org, logged) == [("logout", {})]
    assert session_item(db, org, bob) is None
