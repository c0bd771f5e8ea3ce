"""Races over real HTTP: parallel requests against the running local stack (``python -m devstack
run``), each lined up on a barrier with its connection already open, so that they reach chalice
local — and through it DynamoDB's conditional writes — together. Each race is run a few rounds.
"""

from __future__ import annotations

from tests.support.authenticator import SoftwareAuthenticator
from tests.support.stack_client import StackClient, StackTables, session_id_of, unique_org

CONTENDERS = 5
ROUNDS = 3


def test_parallel_deletes_of_a_members_keys_under_enforcement_leave_exactly_one(keyward: StackClient, db: StackTables):
    org = unique_org("race-delete")
    admin = keyward.enforced_org(org)
    [admin_key] = keyward.key_ids(admin)
    # Enforced before carol ever signed in: she registers her first key to get in.
    login = keyward.login(org=org, user="carol")
    assert login.body["state"] == "registration_required", str(login)
    carol = login.body["token"]
    first_key = SoftwareAuthenticator()
    registered = keyward.add_key(carol, first_key, name="First key")
    assert registered.body["session"]["state"] == "active"
    carol = registered.body["token"]  # registering activated the session under a new token
    keys = {registered.body["key"]["id"]: first_key}

    for round_number in range(1, ROUNDS + 1):
        while len(keys) < CONTENDERS:
            authenticator = SoftwareAuthenticator()
            keys[
                keyward.add_key(carol, authenticator, name=f"Round {round_number} key {len(keys)}").body["key"]["id"]
            ] = authenticator
        assert keyward.key_count(carol) == CONTENDERS, f"round {round_number}"

        survivor = keyward.race_to_delete_every_key(carol, keys, label=f"round {round_number}")

        # The API and the tables agree: one key, counted once, claimed once.
        keys = {survivor: keys[survivor]}
        stored = {item["key_id"]["S"] for item in db.query_org("keys", org) if item["user_id"]["S"] == "carol"}
        assert stored == {survivor}, f"round {round_number}"
        assert db.get("members", org_id=org, user_id="carol")["key_count"]["N"] == "1"
        assert {item["key_id"]["S"] for item in db.scan_org("credentials", org)} == {admin_key, survivor}
    assert keyward.call("GET", "/me", token=carol).status == 200


def test_parallel_registrations_of_one_credential_store_it_once(keyward: StackClient, db: StackTables):
    # The contenders are members of two organizations: a credential ID is unique across all.
    orgs = [unique_org("race-register-a"), unique_org("race-register-b")]
    for round_number in range(1, ROUNDS + 1):
        shared = SoftwareAuthenticator()
        members = [(orgs[index % 2], f"member{round_number}x{index}") for index in range(CONTENDERS)]
        tokens = [keyward.token(org=org, user=user) for org, user in members]
        bodies = []
        for token in tokens:
            options = keyward.registration_options(token).body
            bodies.append(
                {
                    "challenge_id": options["challenge_id"],
                    "name": "Shared key",
                    "credential": shared.register(options["publicKey"], origin=keyward.origin),
                }
            )
        logged = {org: {event["event_key"] for event in db.audit(org)} for org in orgs}

        replies = keyward.in_parallel(
            [
                lambda token=token, body=body: keyward.call("POST", "/me/mfa/keys", token=token, body=body)
                for token, body in zip(tokens, bodies, strict=True)
            ]
        )

        outcome = [f"{org}/{user}: {reply}" for (org, user), reply in zip(members, replies, strict=True)]
        winners = [index for index, reply in enumerate(replies) if reply.status == 201]
        assert len(winners) == 1, f"round {round_number}: exactly one registration may succeed: {outcome}"
        [winner] = winners
        losers = [reply for index, reply in enumerate(replies) if index != winner]
        assert all((r.status, r.code) == (409, "KeyAlreadyRegistered") for r in losers), (
            f"round {round_number}: {outcome}"
        )
        key_id = replies[winner].body["key"]["id"]
        winner_org, winner_user = members[winner]

        claim = db.get("credentials", key_id=key_id)
        assert (claim["org_id"]["S"], claim["user_id"]["S"]) == (winner_org, winner_user), (
            f"round {round_number}: {claim}"
        )
        stored = [
            (org, item["user_id"]["S"])
            for org in orgs
            for item in db.query_org("keys", org)
            if item["key_id"]["S"] == key_id
        ]
        assert stored == [(winner_org, winner_user)], f"round {round_number}: {stored}"
        counts = {
            (org, user): int(db.get("members", org_id=org, user_id=user)["key_count"]["N"]) for org, user in members
        }
        assert counts == {member: int(member == members[winner]) for member in members}, (
            f"round {round_number}: {counts}"
        )
        registered = [
            event
            for org in orgs
            for event in db.audit(org)
            if event["event_key"] not in logged[org] and event["action"] == "key.registered"
        ]
        assert [(event["user_id"], event["target"]) for event in registered] == [(winner_user, key_id)]
        assert [keyward.key_ids(token) for token in tokens] == [
            [key_id] if index == winner else [] for index in range(CONTENDERS)
        ]


def test_parallel_verifies_of_one_assertion_activate_exactly_one_session(keyward: StackClient, db: StackTables):
    org = unique_org("race-verify")
    bob_key = SoftwareAuthenticator(sign_count=41)
    _, _, key_id = keyward.member_with_key(org=org, user="bob", authenticator=bob_key)
    for round_number in range(1, ROUNDS + 1):
        pending = keyward.pending(org=org, user="bob")
        assertion = bob_key.authenticate(pending.public_key, origin=keyward.origin)
        count_before = db.sign_count(org, key_id)
        logged = {event["event_key"] for event in db.audit(org)}

        replies = keyward.in_parallel(
            [
                lambda pending=pending, assertion=assertion: keyward.mfa_verify(
                    pending.token, pending.challenge_id, assertion
                )
                for _ in range(CONTENDERS)
            ]
        )

        outcome = [str(reply) for reply in replies]
        winners = [reply for reply in replies if reply.status == 200]
        assert len(winners) == 1, f"round {round_number}: exactly one verify may activate the session: {outcome}"
        # A loser either found the challenge used up, or the session's token already rotated.
        losers = [(reply.status, reply.code) for reply in replies if reply.status != 200]
        assert set(losers) <= {(401, "ChallengeNotFound"), (401, "InvalidToken")}, f"round {round_number}: {outcome}"
        [winner] = winners
        assert winner.body["state"] == "active" and winner.body["token"] != pending.token

        assert count_before < bob_key.sign_count == db.sign_count(org, key_id), f"round {round_number}"
        events = [(event["action"], event["details"]) for event in db.audit(org) if event["event_key"] not in logged]
        # The counter was written once, with the one success; each loser that got as far as the
        # challenge logged its failure.
        assert [action for action, _ in events].count("mfa.succeeded") == 1, events
        failures = [details["reason"] for action, details in events if action == "mfa.failed"]
        assert sorted(failures) == sorted(code for _, code in losers if code == "ChallengeNotFound"), events
        session = db.get("sessions-v2", session_id=session_id_of(pending.token))
        assert (session["state"]["S"], session["verified_key_id"]["S"]) == ("active", key_id)
        assert keyward.me(winner.body["token"]).body["session"]["state"] == "active"
        assert keyward.call("GET", "/me", token=pending.token).code == "InvalidToken"
