"""Attacks on the running local stack (``python -m devstack run``), over real HTTP.

Each test mounts one attack and asserts the exact refusal (status and ``Code``) and that nothing
changed: the stack's DynamoDB is compared before and after (organizations, members, keys,
credential claims, sessions, backup credentials), and where it matters the challenge and the audit
log are looked at, too. The tests share one stack; each uses organizations of its own.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.authenticator import SoftwareAuthenticator, b64url, b64url_decode
from tests.support.stack_client import (
    Reply,
    StackClient,
    StackTables,
    session_id_of,
    unique_org,
)

MAX_BODY = 64 * 1024
EVIL_ORIGIN = "https://evil.example"


def refused(reply: Reply, status: int, code: str) -> None:
    """A refusal as the contract says: this status, this ``Code``, a message, no internals."""
    assert (reply.status, reply.code) == (status, code), str(reply)
    assert isinstance(reply.body.get("Message"), str) and reply.body["Message"], str(reply)
    assert "Traceback" not in json.dumps(reply.body), str(reply)


def audit_keys(db: StackTables, org: str) -> set[str]:
    return {event["event_key"] for event in db.audit(org)}


def new_events(db: StackTables, org: str, before: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """The audit events written since ``before`` was read, oldest first: (action, details)."""
    return [(event["action"], event["details"]) for event in db.audit(org) if event["event_key"] not in before]


def state_of(keyward: StackClient, token: str) -> str:
    return keyward.me(token).body["session"]["state"]


def without_allow_list(public_key: dict[str, Any]) -> dict[str, Any]:
    """Request options as a client that ignores allowCredentials would use them."""
    return {**public_key, "allowCredentials": []}


def honest_mfa_passes(keyward: StackClient, token: str, authenticator: SoftwareAuthenticator) -> str:
    """The pending session still passes MFA with a fresh challenge and an honest assertion."""
    options = keyward.mfa_options(token).body
    reply = keyward.mfa_verify(
        token, options["challenge_id"], authenticator.authenticate(options["publicKey"], origin=keyward.origin)
    )
    assert reply.status == 200, f"an honest MFA check after the attack: {reply}"
    return reply.body["token"]


# --- replay and challenge binding ----------------------------------------------------------------


def test_a_replayed_assertion_is_refused(keyward, db):
    org = unique_org("replay")
    _, bob_key, key_id = keyward.member_with_key(org=org, user="bob")
    first = keyward.pending(org=org, user="bob")
    assertion = bob_key.authenticate(first.public_key, origin=keyward.origin)
    assert keyward.mfa_verify(first.token, first.challenge_id, assertion).status == 200
    used_count = db.sign_count(org, key_id)

    again = keyward.pending(org=org, user="bob")
    before, logged = db.snapshot(org), audit_keys(db, org)

    # The same challenge ID and assertion: the challenge is gone.
    refused(keyward.mfa_verify(again.token, first.challenge_id, assertion), 401, "ChallengeNotFound")
    # The old assertion against the new session's own challenge: it signs another one.
    refused(keyward.mfa_verify(again.token, again.challenge_id, assertion), 401, "ChallengeMismatch")

    assert db.snapshot(org) == before
    assert db.sign_count(org, key_id) == used_count
    assert state_of(keyward, again.token) == "mfa_required"
    assert new_events(db, org, logged) == [
        ("mfa.failed", {"reason": "ChallengeNotFound"}),
        ("mfa.failed", {"reason": "ChallengeMismatch"}),
    ]


def test_two_concurrent_uses_of_one_challenge_let_exactly_one_through(keyward, db):
    org = unique_org("one-challenge")
    _, bob_key, key_id = keyward.member_with_key(org=org, user="bob")
    for round_number in range(3):
        pending = keyward.pending(org=org, user="bob")
        # Two genuine assertions of one key for the one challenge (counters n and n+1).
        assertions = [bob_key.authenticate(pending.public_key, origin=keyward.origin) for _ in range(2)]
        counts = [bob_key.sign_count - 1, bob_key.sign_count]
        logged = audit_keys(db, org)

        replies = keyward.in_parallel(
            [
                lambda assertion=assertion, pending=pending: keyward.mfa_verify(
                    pending.token, pending.challenge_id, assertion
                )
                for assertion in assertions
            ]
        )

        outcome = [str(reply) for reply in replies]
        winners = [index for index, reply in enumerate(replies) if reply.status == 200]
        assert len(winners) == 1, f"round {round_number}: exactly one use of the challenge may pass: {outcome}"
        [winner] = winners
        [loser] = [reply for index, reply in enumerate(replies) if index != winner]
        # The loser either found the challenge used up, or the session's token already rotated.
        assert (loser.status, loser.code) in {(401, "ChallengeNotFound"), (401, "InvalidToken")}, outcome
        assert db.sign_count(org, key_id) == counts[winner], outcome
        token = replies[winner].body["token"]
        assert state_of(keyward, token) == "active"
        refused(keyward.call("GET", "/me", token=pending.token), 401, "InvalidToken")
        stored = db.get("sessions-v2", session_id=session_id_of(pending.token))
        assert stored["state"]["S"] == "active" and stored["verified_key_id"]["S"] == key_id
        actions = [action for action, _ in new_events(db, org, logged)]
        assert actions.count("mfa.succeeded") == 1, actions


def test_a_challenge_of_another_session_is_refused(keyward, db):
    org = unique_org("other-session")
    _, bob_key, _ = keyward.member_with_key(org=org, user="bob")
    first, second = keyward.pending(org=org, user="bob"), keyward.pending(org=org, user="bob")
    before = db.snapshot(org)

    assertion = bob_key.authenticate(first.public_key, origin=keyward.origin)
    refused(keyward.mfa_verify(second.token, first.challenge_id, assertion), 401, "ChallengeMismatch")

    assert db.snapshot(org) == before
    assert db.challenge(first.challenge_id) is not None, "a refused use must not use up another session's challenge"
    assert [state_of(keyward, p.token) for p in (first, second)] == ["mfa_required", "mfa_required"]
    # It stays usable by the session it was issued to.
    retry = keyward.mfa_verify(
        first.token, first.challenge_id, bob_key.authenticate(first.public_key, origin=keyward.origin)
    )
    assert retry.status == 200, str(retry)


def test_a_challenge_of_another_user_is_refused(keyward, db):
    org = unique_org("other-user")
    _, bob_key, _ = keyward.member_with_key(org=org, user="bob")
    _, carol_key, _ = keyward.member_with_key(org=org, user="carol")
    bob, carol = keyward.pending(org=org, user="bob"), keyward.pending(org=org, user="carol")
    before = db.snapshot(org)

    # Carol signs bob's challenge with her own key and sends it with her session.
    assertion = carol_key.authenticate(without_allow_list(bob.public_key), origin=keyward.origin)
    refused(keyward.mfa_verify(carol.token, bob.challenge_id, assertion), 401, "ChallengeMismatch")

    assert db.snapshot(org) == before
    assert db.challenge(bob.challenge_id) is not None
    assert [state_of(keyward, p.token) for p in (bob, carol)] == ["mfa_required", "mfa_required"]
    retry = keyward.mfa_verify(bob.token, bob.challenge_id, bob_key.authenticate(bob.public_key, origin=keyward.origin))
    assert retry.status == 200, str(retry)


def test_a_challenge_of_the_other_ceremony_is_refused(keyward, db):
    org = unique_org("other-ceremony")
    _, bob_key, _ = keyward.member_with_key(org=org, user="bob")
    pending = keyward.pending(org=org, user="bob")
    authentication_challenge = pending.challenge_id
    token = honest_mfa_passes(keyward, pending.token, bob_key)  # the same session, now active
    registration = keyward.registration_options(token).body
    before = db.snapshot(org)

    # An MFA challenge of this very session, answered as a registration.
    authentication_bytes = b64url(b64url_decode(pending.public_key["challenge"]))
    forged = SoftwareAuthenticator().register(
        registration["publicKey"], origin=keyward.origin, challenge=authentication_bytes
    )
    refused(keyward.register(token, authentication_challenge, forged), 401, "ChallengeMismatch")
    # A registration challenge answered with a response of the other type.
    swapped = SoftwareAuthenticator().register(
        registration["publicKey"], origin=keyward.origin, client_data_type="webauthn.get"
    )
    refused(keyward.register(token, registration["challenge_id"], swapped), 401, "ChallengeMismatch")

    # The other way round: the session's registration challenge used to pass MFA. Put the
    # session back into the MFA step behind the API's back, as the only way to hold both.
    registration = keyward.registration_options(token).body
    db.client.update_item(
        TableName=db.table("sessions-v2"),
        Key={"session_id": {"S": session_id_of(token)}},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues={":s": {"S": "mfa_required"}},
    )
    before = db.snapshot(org)
    options = keyward.mfa_options(token).body
    forged = {**options["publicKey"], "challenge": registration["publicKey"]["challenge"]}
    assertion = bob_key.authenticate(forged, origin=keyward.origin)
    refused(keyward.mfa_verify(token, registration["challenge_id"], assertion), 401, "ChallengeMismatch")

    assert db.snapshot(org) == before
    assert db.challenge(registration["challenge_id"]) is not None


@pytest.mark.parametrize("ceremony", ["registration", "authentication"])
def test_an_expired_challenge_is_refused(keyward, db, ceremony):
    org = unique_org("expired")
    if ceremony == "registration":
        token = keyward.token(org=org, user="bob")
        options = keyward.registration_options(token).body
        challenge_id = options["challenge_id"]
        db.expire_challenge(challenge_id, at=datetime.now(UTC) - timedelta(seconds=1))
        before = db.snapshot(org)
        credential = SoftwareAuthenticator().register(options["publicKey"], origin=keyward.origin)
        refused(keyward.register(token, challenge_id, credential), 401, "ChallengeExpired")
        assert keyward.key_ids(token) == []
    else:
        _, bob_key, _ = keyward.member_with_key(org=org, user="bob")
        pending = keyward.pending(org=org, user="bob")
        db.expire_challenge(pending.challenge_id, at=datetime.now(UTC) - timedelta(seconds=1))
        before = db.snapshot(org)
        credential = bob_key.authenticate(pending.public_key, origin=keyward.origin)
        refused(keyward.mfa_verify(pending.token, pending.challenge_id, credential), 401, "ChallengeExpired")
        assert state_of(keyward, pending.token) == "mfa_required"
    assert db.snapshot(org) == before


# --- responses an honest browser and authenticator never produce ----------------------------------


def _tampered_ceremony_is_refused(
    keyward: StackClient,
    db: StackTables,
    *,
    ceremony: str,
    code: str,
    flags: dict[str, bool] | None = None,
    client: dict[str, Any] | None = None,
) -> None:
    """Run one ceremony with the authenticator's ``flags`` and the browser's ``client`` options
    tampered with; it must be refused with 401 ``code`` and change nothing."""
    org = unique_org(code.lower())
    client = {"origin": keyward.origin, **(client or {})}
    if ceremony == "registration":
        token = keyward.token(org=org, user="bob")
        options = keyward.registration_options(token).body
        before, logged = db.snapshot(org), audit_keys(db, org)
        authenticator = SoftwareAuthenticator(**(flags or {}))
        reply = keyward.register(token, options["challenge_id"], authenticator.register(options["publicKey"], **client))
        refused(reply, 401, code)
        assert db.snapshot(org) == before
        assert new_events(db, org, logged) == [("key.registration_failed", {"reason": code})]
        assert keyward.key_ids(token) == []
        keyward.add_key(token)  # the member can still register an honest key
        return

    _, bob_key, key_id = keyward.member_with_key(org=org, user="bob")
    pending = keyward.pending(org=org, user="bob")
    before, logged = db.snapshot(org), audit_keys(db, org)
    honest = {name: getattr(bob_key, name) for name in (flags or {})}
    for name, value in (flags or {}).items():
        setattr(bob_key, name, value)
    reply = keyward.mfa_verify(pending.token, pending.challenge_id, bob_key.authenticate(pending.public_key, **client))
    for name, value in honest.items():
        setattr(bob_key, name, value)

    refused(reply, 401, code)
    assert db.snapshot(org) == before
    assert db.last_used(org, key_id) is None
    assert new_events(db, org, logged) == [("mfa.failed", {"reason": code})]
    assert state_of(keyward, pending.token) == "mfa_required"
    honest_mfa_passes(keyward, pending.token, bob_key)


CEREMONIES = pytest.mark.parametrize("ceremony", ["registration", "authentication"])


@CEREMONIES
def test_a_wrong_origin_is_refused(keyward, db, ceremony):
    _tampered_ceremony_is_refused(keyward, db, ceremony=ceremony, code="OriginMismatch", client={"origin": EVIL_ORIGIN})


@CEREMONIES
def test_a_wrong_rp_id_is_refused(keyward, db, ceremony):
    _tampered_ceremony_is_refused(keyward, db, ceremony=ceremony, code="RpIdMismatch", client={"rp_id": "evil.example"})


@CEREMONIES
def test_a_cross_origin_ceremony_is_refused(keyward, db, ceremony):
    _tampered_ceremony_is_refused(
        keyward, db, ceremony=ceremony, code="CrossOriginRefused", client={"cross_origin": True}
    )


@CEREMONIES
def test_a_response_without_user_presence_is_refused(keyward, db, ceremony):
    _tampered_ceremony_is_refused(keyward, db, ceremony=ceremony, code="UserNotPresent", flags={"user_present": False})


@CEREMONIES
def test_backed_up_without_backup_eligible_is_refused(keyward, db, ceremony):
    _tampered_ceremony_is_refused(
        keyward, db, ceremony=ceremony, code="InvalidBackupFlags", flags={"backup_eligible": False, "backed_up": True}
    )


def test_a_forged_signature_is_refused(keyward, db):
    org = unique_org("forged")
    _, bob_key, _ = keyward.member_with_key(org=org, user="bob")
    pending = keyward.pending(org=org, user="bob")
    before = db.snapshot(org)

    # Another private key under bob's credential ID.
    impostor = SoftwareAuthenticator(credential_id=bob_key.credential_id, sign_count=100)
    reply = keyward.mfa_verify(
        pending.token, pending.challenge_id, impostor.authenticate(pending.public_key, origin=keyward.origin)
    )

    refused(reply, 401, "CeremonyFailed")
    assert db.snapshot(org) == before
    assert state_of(keyward, pending.token) == "mfa_required"


def test_a_sign_count_regression_is_refused(keyward, db):
    org = unique_org("regression")
    _, bob_key, key_id = keyward.member_with_key(
        org=org, user="bob", authenticator=SoftwareAuthenticator(sign_count=10)
    )
    keyward.mfa_login(org=org, user="bob", authenticator=bob_key)
    assert db.sign_count(org, key_id) == 11

    for clone_count, presented in ((5, 6), (10, 11)):  # behind, and equal to the stored count
        bob_key.sign_count = clone_count
        pending = keyward.pending(org=org, user="bob")
        before, logged = db.snapshot(org), audit_keys(db, org)
        reply = keyward.mfa_verify(
            pending.token, pending.challenge_id, bob_key.authenticate(pending.public_key, origin=keyward.origin)
        )

        refused(reply, 401, "SignCountRegression")
        assert db.snapshot(org) == before
        assert db.sign_count(org, key_id) == 11
        assert state_of(keyward, pending.token) == "mfa_required"
        assert new_events(db, org, logged) == [
            ("key.sign_count_regression", {"stored": "11", "presented": str(presented)}),
            ("mfa.failed", {"reason": "SignCountRegression"}),
        ]


def test_another_users_credential_is_refused(keyward, db):
    org, elsewhere = unique_org("other-cred"), unique_org("other-cred-org")
    _, bob_key, _ = keyward.member_with_key(org=org, user="bob")
    _, carol_key, _ = keyward.member_with_key(org=org, user="carol")
    _, mallory_key, _ = keyward.member_with_key(org=elsewhere, user="mallory")

    # A genuine assertion of bob's key (same organization), then of mallory's (another one),
    # each for a challenge of carol's session.
    for stranger in (bob_key, mallory_key):
        pending = keyward.pending(org=org, user="carol")
        before = db.snapshot(org, elsewhere)
        assertion = stranger.authenticate(without_allow_list(pending.public_key), origin=keyward.origin)
        refused(keyward.mfa_verify(pending.token, pending.challenge_id, assertion), 401, "UnknownCredential")
        assert db.snapshot(org, elsewhere) == before
        assert state_of(keyward, pending.token) == "mfa_required"
    assert all(
        db.last_used(org, key["key_id"]["S"]) is None
        for key in db.query_org("keys", org)
        if key["user_id"]["S"] == "bob"
    )
    honest_mfa_passes(keyward, pending.token, carol_key)


def test_a_credential_id_owned_by_someone_else_cannot_be_registered(keyward, db):
    org, elsewhere = unique_org("taken"), unique_org("taken-elsewhere")
    _, bob_key, bob_key_id = keyward.member_with_key(org=org, user="bob")
    claim = db.get("credentials", key_id=bob_key_id)
    assert claim is not None and claim["user_id"]["S"] == "bob"

    # Another member of bob's organization, and a member of another organization, each present
    # bob's credential ID under a key of their own.
    for victim_org, user in ((org, "carol"), (elsewhere, "mallory")):
        token = keyward.token(org=victim_org, user=user)
        options = keyward.registration_options(token).body
        before = db.snapshot(org, elsewhere)
        thief = SoftwareAuthenticator(credential_id=bob_key.credential_id)
        reply = keyward.register(
            token, options["challenge_id"], thief.register(options["publicKey"], origin=keyward.origin)
        )
        refused(reply, 409, "KeyAlreadyRegistered")
        assert db.snapshot(org, elsewhere) == before
        assert keyward.key_ids(token) == []
    assert db.get("credentials", key_id=bob_key_id) == claim
    keyward.mfa_login(org=org, user="bob", authenticator=bob_key)  # bob's key is still his


@CEREMONIES
def test_a_credential_id_of_1024_bytes_is_refused(keyward, db, ceremony):
    org = unique_org("long-id")
    overlong = SoftwareAuthenticator(credential_id=bytes(1024))
    if ceremony == "registration":
        token = keyward.token(org=org, user="bob")
        options = keyward.registration_options(token).body
        before = db.snapshot(org)
        reply = keyward.register(
            token, options["challenge_id"], overlong.register(options["publicKey"], origin=keyward.origin)
        )
        refused(reply, 400, "CredentialIdTooLong")
        assert db.snapshot(org) == before
        assert db.challenge(options["challenge_id"]) is not None, "a malformed request consumes no challenge"
        # The same challenge still registers a credential ID of the largest allowed size.
        longest = SoftwareAuthenticator(credential_id=b"\x01" * 1023)
        accepted = keyward.register(
            token, options["challenge_id"], longest.register(options["publicKey"], origin=keyward.origin)
        )
        assert accepted.status == 201, str(accepted)
        return

    _, bob_key, _ = keyward.member_with_key(org=org, user="bob")
    pending = keyward.pending(org=org, user="bob")
    before = db.snapshot(org)
    assertion = overlong.authenticate(without_allow_list(pending.public_key), origin=keyward.origin)
    refused(keyward.mfa_verify(pending.token, pending.challenge_id, assertion), 400, "CredentialIdTooLong")
    assert db.snapshot(org) == before
    assert db.challenge(pending.challenge_id) is not None, "a malformed request consumes no challenge"
    retry = keyward.mfa_verify(
        pending.token, pending.challenge_id, bob_key.authenticate(pending.public_key, origin=keyward.origin)
    )
    assert retry.status == 200, str(retry)


def test_an_unsupported_algorithm_is_refused(keyward, db):
    org = unique_org("alg")
    token = keyward.token(org=org, user="bob")
    options = keyward.registration_options(token).body
    before, logged = db.snapshot(org), audit_keys(db, org)

    authenticator = SoftwareAuthenticator(cose_alg_override=-65535)
    reply = keyward.register(
        token, options["challenge_id"], authenticator.register(options["publicKey"], origin=keyward.origin)
    )

    refused(reply, 401, "UnsupportedAlgorithm")
    assert db.snapshot(org) == before
    assert new_events(db, org, logged) == [("key.registration_failed", {"reason": "UnsupportedAlgorithm"})]
    assert keyward.key_ids(token) == []


def test_a_user_handle_of_another_user_is_refused(keyward, db):
    org = unique_org("handle")
    bob_token, bob_key, _ = keyward.member_with_key(org=org, user="bob")
    carol_token, _, _ = keyward.member_with_key(org=org, user="carol")
    # WebAuthn's user.id of each, as the registration options give it.
    handles = {
        user: b64url_decode(keyward.registration_options(token).body["publicKey"]["user"]["id"])
        for user, token in (("bob", bob_token), ("carol", carol_token))
    }
    assert handles["bob"] != handles["carol"]
    pending = keyward.pending(org=org, user="bob")
    before = db.snapshot(org)

    assertion = bob_key.authenticate(pending.public_key, origin=keyward.origin, user_handle=handles["carol"])
    refused(keyward.mfa_verify(pending.token, pending.challenge_id, assertion), 401, "UnknownCredential")

    assert db.snapshot(org) == before
    assert state_of(keyward, pending.token) == "mfa_required"
    # Bob's own user handle passes.
    options = keyward.mfa_options(pending.token).body
    own = bob_key.authenticate(options["publicKey"], origin=keyward.origin, user_handle=handles["bob"])
    assert keyward.mfa_verify(pending.token, options["challenge_id"], own).status == 200


# --- sessions ------------------------------------------------------------------------------------


def test_the_token_from_before_mfa_stops_working_after_rotation(keyward, db):
    org = unique_org("rotation")
    _, bob_key, key_id = keyward.member_with_key(org=org, user="bob")
    pending = keyward.pending(org=org, user="bob")
    active = keyward.mfa_verify(
        pending.token, pending.challenge_id, bob_key.authenticate(pending.public_key, origin=keyward.origin)
    )
    assert active.status == 200, str(active)
    token = active.body["token"]
    assert session_id_of(token) == session_id_of(pending.token) and token != pending.token
    before = db.snapshot(org)

    for method, path, body in (
        ("GET", "/me", None),
        ("GET", "/me/mfa/keys", None),
        ("POST", "/auth/mfa/options", None),
        ("POST", "/auth/mfa/verify", {"challenge_id": pending.challenge_id, "credential": {}}),
        ("PATCH", f"/me/mfa/keys/{key_id}", {"name": "Stolen"}),
        ("DELETE", f"/me/mfa/keys/{key_id}", None),
        ("POST", "/auth/logout", None),
    ):
        refused(keyward.call(method, path, token=pending.token, body=body), 401, "InvalidToken")

    assert db.snapshot(org) == before
    assert state_of(keyward, token) == "active"
    assert keyward.key_ids(token) == [key_id]


def test_a_session_from_before_enforcement_is_refused(keyward, db):
    org = unique_org("before-enforcement")
    admin = keyward.token(org=org, user="admin", admin=True)
    keyward.add_key(admin, name="Admin key")
    bob_active, bob_key, bob_key_id = keyward.member_with_key(org=org, user="bob")
    bob_pending = keyward.pending(org=org, user="bob")
    ready = bob_key.authenticate(bob_pending.public_key, origin=keyward.origin)  # a valid assertion, sent too late
    carol = keyward.token(org=org, user="carol")
    old_admin = keyward.token(org=org, user="admin", admin=True, state="mfa_required")
    sessions_before = {s["session_id"]["S"]: s for s in db.scan_org("sessions-v2", org)}
    before = db.snapshot(org)

    keyward.enforce(admin)

    attempts = [
        (bob_active, "GET", "/me", None),
        (bob_active, "DELETE", f"/me/mfa/keys/{bob_key_id}", None),
        (bob_active, "PATCH", f"/me/mfa/keys/{bob_key_id}", {"name": "Renamed"}),
        (
            bob_pending.token,
            "POST",
            "/auth/mfa/verify",
            {"challenge_id": bob_pending.challenge_id, "credential": ready},
        ),
        (carol, "POST", "/me/mfa/keys/options", None),
        (old_admin, "GET", "/me", None),
    ]
    for token, method, path, body in attempts:
        reply = keyward.call(method, path, token=token, body=body)
        stored = db.get("sessions-v2", session_id=session_id_of(token))
        # Refused at once; once the stream function has deleted the session, it is simply gone.
        expected = {(401, "SessionEndedByEnforcement")} | ({(401, "InvalidToken")} if stored is None else set())
        assert (reply.status, reply.code) in expected, f"{method} {path}: {reply}"

    after = db.snapshot(org)
    for table in ("members", "keys", "credentials", "backup-credentials"):
        assert after[org][table] == before[org][table], table
    assert db.challenge(bob_pending.challenge_id) is not None
    for session_id, stored in after[org]["sessions"].items():
        if session_id != session_id_of(admin):  # every other session is ended, never changed
            assert {k: v for k, v in sessions_before[session_id].items() if k != "last_seen_at"} == stored
    assert state_of(keyward, admin) == "active"


# --- roles and organizations -----------------------------------------------------------------------


def _admin_calls(*, user_id: str, key_id: str, backup_key_id: str) -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/org/mfa", None),
        ("PUT", "/org/mfa", {"enforced": True}),
        ("GET", "/org/members", None),
        ("GET", "/org/mfa/keys", None),
        ("GET", f"/org/mfa/keys?user_id={user_id}", None),
        ("DELETE", f"/org/members/{user_id}/mfa/keys/{key_id}", None),
        ("DELETE", f"/org/members/{user_id}/sessions", None),
        ("POST", "/org/backup-credentials", None),
        ("GET", "/org/backup-credentials", None),
        ("DELETE", f"/org/backup-credentials/{backup_key_id}", None),
        ("GET", "/org/audit", None),
    ]


def test_a_member_cannot_call_admin_endpoints(keyward, db):
    org = unique_org("not-admin")
    admin, _, admin_key_id = keyward.member_with_key(org=org, user="admin", admin=True)
    backup = keyward.call("POST", "/org/backup-credentials", token=admin)
    assert backup.status == 201, str(backup)
    bob, _, _ = keyward.member_with_key(org=org, user="bob")
    before = db.snapshot(org)

    calls = _admin_calls(user_id="admin", key_id=admin_key_id, backup_key_id=backup.body["key_id"])
    replies = [keyward.call(method, path, token=bob, body=body) for method, path, body in calls]

    wrong = [
        f"{method} {path}: {reply}"
        for (method, path, _), reply in zip(calls, replies, strict=True)
        if (reply.status, reply.code) != (403, "AdminRequired")
    ]
    assert not wrong, f"a member must get 403 AdminRequired: {wrong}"
    assert db.snapshot(org) == before
    assert state_of(keyward, admin) == "active" and keyward.key_ids(admin) == [admin_key_id]


def test_an_admin_of_another_org_sees_and_changes_nothing_of_it(keyward, db):
    org, other = unique_org("victim"), unique_org("attacker")
    admin, _, admin_key_id = keyward.member_with_key(org=org, user="admin", admin=True)
    backup = keyward.call("POST", "/org/backup-credentials", token=admin)
    assert backup.status == 201, str(backup)
    keyward.member_with_key(org=org, user="bob")
    # The attacker is "admin" too, in an organization of their own.
    intruder = keyward.token(org=other, user="admin", admin=True)
    before = db.snapshot(org)

    def call(method: str, path: str, body: Any = None) -> Reply:
        return keyward.call(method, path, token=intruder, body=body)

    members = call("GET", "/org/members")
    assert members.status == 200 and [m["id"] for m in members.body["members"]] == ["admin"], str(members)
    assert members.body["members"][0]["key_count"] == 0, str(members)  # their own admin, not the victim's
    for path in ("/org/mfa/keys", "/org/mfa/keys?user_id=bob", "/org/mfa/keys?user_id=admin"):
        keys = call("GET", path)
        assert (keys.status, keys.body["keys"]) == (200, []), f"{path}: {keys}"
    credentials = call("GET", "/org/backup-credentials")
    assert (credentials.status, credentials.body["backup_credentials"]) == (200, []), str(credentials)
    status = call("GET", "/org/mfa")
    assert status.status == 200 and (status.body["members_total"], status.body["members_compliant"]) == (1, 0), str(
        status
    )
    for path in ("/org/audit", "/org/audit?user_id=bob"):
        events = call("GET", path)
        assert events.status == 200, str(events)
        assert all(event["user_id"] in (None, "admin") for event in events.body["events"]), f"{path}: {events}"
        assert all(event["target"] not in (admin_key_id, backup.body["key_id"]) for event in events.body["events"]), (
            str(events)
        )

    refused(call("DELETE", f"/org/members/admin/mfa/keys/{admin_key_id}"), 404, "KeyNotFound")
    refused(call("DELETE", f"/org/members/bob/mfa/keys/{admin_key_id}"), 404, "KeyNotFound")
    refused(call("DELETE", "/org/members/bob/sessions"), 404, "MemberNotFound")
    # The victim's backup-credentials sessions, named as the member they act as.
    refused(call("DELETE", f"/org/members/backup:{backup.body['key_id']}/sessions"), 404, "MemberNotFound")
    refused(call("DELETE", f"/org/backup-credentials/{backup.body['key_id']}"), 404, "BackupCredentialsNotFound")

    assert db.snapshot(org) == before
    assert state_of(keyward, admin) == "active" and keyward.key_ids(admin) == [admin_key_id]


# --- request bodies ------------------------------------------------------------------------------

MASS_ASSIGNMENT = {
    "user_id": "mallory",
    "sign_count": 0,
    "credential_id": b64url(b"\x00" * 32),
    "created_at": "2000-01-01T00:00:00Z",
    "org_id": "elsewhere",
    "public_key": b64url(b"\x00" * 77),
    "id": "AAAAAAAAAAAAAAAAAAAAAA",
    "last_used_at": None,
    "backed_up": True,
}


def test_patch_refuses_mass_assignment(keyward, db):
    org = unique_org("mass")
    token, _, key_id = keyward.member_with_key(org=org, user="bob")
    stored = db.key(org, key_id)
    before = db.snapshot(org)

    for field, value in MASS_ASSIGNMENT.items():
        for body in ({"name": "Renamed", field: value}, {field: value}):
            refused(keyward.call("PATCH", f"/me/mfa/keys/{key_id}", token=token, body=body), 400, "MalformedRequest")

    assert db.key(org, key_id) == stored
    assert db.snapshot(org) == before
    [shown] = keyward.call("GET", "/me/mfa/keys", token=token).body["keys"]
    assert shown["name"] == "bob's key"


def test_an_oversized_body_is_refused(keyward, db):
    org = unique_org("oversized")
    token, bob_key, key_id = keyward.member_with_key(org=org, user="bob")
    pending = keyward.pending(org=org, user="bob")
    before = db.snapshot(org)

    def padded(body: dict[str, Any], size: int) -> bytes:
        raw = json.dumps({**body, "name": ""}).encode()
        return json.dumps({**body, "name": "x" * (size - len(raw))}).encode()

    just_over = padded({}, MAX_BODY + 1)
    assert len(just_over) == MAX_BODY + 1
    refused(keyward.call("PATCH", f"/me/mfa/keys/{key_id}", token=token, raw=just_over), 413, "BodyTooLarge")
    refused(
        keyward.call("PATCH", f"/me/mfa/keys/{key_id}", token=token, raw=padded({}, 1024 * 1024)), 413, "BodyTooLarge"
    )
    refused(
        keyward.call("POST", "/auth/login", raw=json.dumps({"id_token": "x" * MAX_BODY}).encode()), 413, "BodyTooLarge"
    )
    assertion = bob_key.authenticate(pending.public_key, origin=keyward.origin)
    huge = {"challenge_id": pending.challenge_id, "credential": {**assertion, "padding": "x" * MAX_BODY}}
    refused(keyward.call("POST", "/auth/mfa/verify", token=pending.token, body=huge), 413, "BodyTooLarge")

    assert db.snapshot(org) == before
    assert db.challenge(pending.challenge_id) is not None, "a refused body consumes no challenge"
    assert state_of(keyward, pending.token) == "mfa_required"
    ok = keyward.call("PATCH", f"/me/mfa/keys/{key_id}", token=token, raw=padded({}, 64))
    assert ok.status == 200, str(ok)  # the same request, small enough, is fine


def test_a_deeply_nested_body_is_refused(keyward, db):
    org = unique_org("nested")
    token, _, key_id = keyward.member_with_key(org=org, user="bob")
    pending = keyward.pending(org=org, user="bob")
    before = db.snapshot(org)

    depth = 10_000  # far beyond any parser's recursion limit, and still well under 64 KiB
    arrays = ('{"name": ' + "[" * depth + "]" * depth + "}").encode()
    objects = ('{"x":' * depth + "1" + "}" * depth).encode()
    credential = (
        '{"challenge_id": "' + pending.challenge_id + '", "credential": ' + '{"a":' * depth + "1" + "}" * depth + "}"
    ).encode()
    for raw in (arrays, objects, credential):
        assert len(raw) < MAX_BODY
    refused(keyward.call("PATCH", f"/me/mfa/keys/{key_id}", token=token, raw=arrays), 400, "MalformedJson")
    refused(keyward.call("PATCH", f"/me/mfa/keys/{key_id}", token=token, raw=objects), 400, "MalformedJson")
    refused(keyward.call("POST", "/auth/login", raw=objects), 400, "MalformedJson")
    refused(keyward.call("POST", "/auth/mfa/verify", token=pending.token, raw=credential), 400, "MalformedJson")

    assert db.snapshot(org) == before
    assert db.challenge(pending.challenge_id) is not None, "a malformed request consumes no challenge"
    assert state_of(keyward, pending.token) == "mfa_required"
    assert keyward.call("GET", "/me/mfa/keys", token=token).body["keys"][0]["name"] == "bob's key"
