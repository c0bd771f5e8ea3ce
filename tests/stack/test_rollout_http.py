"""Rolling enforcement out, played over HTTP against the local stack: an IdP signing in to an
organization bound to another, organizations only an operator creates, offboarding, the grace
period's deadline, the reason a cleaned-up session's token gives, and the coverage counters
under parallel registrations and deletions."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from devstack.dynamodb import dynamodb_environment
from devstack.idp import DevIdentityProvider
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.local_stack import (
    PROJECT_ROOT,
    LocalStack,
    running_local_stack,
    stack_environment,
)
from tests.support.stack_client import StackClient, StackTables, session_id_of, unique_org

OTHER_ISSUER = "https://idp.other-customer.example"
OTHER_IDP = DevIdentityProvider.ephemeral()
# Configuration binds this organization to the other customer's IdP.
OTHER_ORG = unique_org("globex")
# A third IdP, like the dev IdP bound to no organization by configuration.
THIRD_ISSUER = "https://idp.third-customer.example"
THIRD_IDP = DevIdentityProvider.ephemeral()


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    dev_idp = DevIdentityProvider.load_or_create()
    providers = [
        # The local dev IdP, as the single-IdP settings describe it: every organization not bound elsewhere.
        {"issuer": "http://localhost:8000/dev-idp", "audience": "keyward-local", "jwks_json": dev_idp.jwks_json()},
        {
            "issuer": OTHER_ISSUER,
            "audience": "keyward-local",
            "jwks_json": OTHER_IDP.jwks_json(),
            "organizations": [OTHER_ORG],
        },
        {"issuer": THIRD_ISSUER, "audience": "keyward-local", "jwks_json": THIRD_IDP.jwks_json()},
    ]
    with pytest.MonkeyPatch.context() as patch:
        # The stack inherits this process's environment; organizations exist once an operator creates them.
        patch.setenv("KEYWARD_IDENTITY_PROVIDERS", json.dumps(providers))
        patch.setenv("KEYWARD_ORG_CREATION", "operator")
        with running_local_stack(tmp_path_factory.mktemp("rollout-stack")) as stack:
            yield stack


def _operator(local_stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m keyward`` against the stack's tables, as an operator runs it."""
    environment = {
        **stack_environment(),
        **dynamodb_environment(endpoint=local_stack.dynamodb),
        "KEYWARD_STAGE": "local",
    }
    return subprocess.run(
        [sys.executable, "-m", "keyward", *args],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _new_org(local_stack: LocalStack, prefix: str, *issuer: str) -> str:
    org = unique_org(prefix)
    created = _operator(local_stack, "org", "create", org, *issuer)
    assert created.returncode == 0, created.stderr
    return org


def _login(keyward: StackClient, id_token: str):
    return keyward.call("POST", "/auth/login", body={"id_token": id_token})


# --- organizations bound to their IdP ---------------------------------------------------------


def test_an_unknown_organization_is_refused_until_an_operator_creates_it(keyward: StackClient, local_stack, db):
    org = unique_org("newco")
    refused = _login(keyward, keyward.idp.mint(org=org, user="nina", admin=True))
    assert (refused.status, refused.code) == (401, "UnknownOrganization"), str(refused)
    assert db.get("orgs", org_id=org) is None and db.query_org("members", org) == []

    created = _operator(local_stack, "org", "create", org)
    assert created.returncode == 0, created.stderr
    assert _operator(local_stack, "org", "create", org).returncode == 1
    assert _login(keyward, keyward.idp.mint(org=org, user="nina", admin=True)).status == 200
    assert db.get("orgs", org_id=org)["members_total"]["N"] == "1"


def test_an_idp_cannot_sign_in_to_another_customers_organization(keyward: StackClient, local_stack, db):
    _operator(local_stack, "org", "create", OTHER_ORG)
    own = _new_org(local_stack, "acme-bound")
    assert _login(keyward, keyward.idp.mint(org=own, user="bob")).status == 200  # binds it to the dev IdP
    assert _login(keyward, OTHER_IDP.mint(org=OTHER_ORG, user="gina", admin=True, issuer=OTHER_ISSUER)).status == 200

    # Validly signed by a configured IdP, naming an organization bound to the other one: refused,
    # whoever the token claims to be, and nothing is stored.
    before = db.snapshot(own, OTHER_ORG)
    for attack in (
        OTHER_IDP.mint(org=own, user="bob", admin=True, issuer=OTHER_ISSUER),
        OTHER_IDP.mint(org=own, user="mallory", admin=True, issuer=OTHER_ISSUER),
        keyward.idp.mint(org=OTHER_ORG, user="gina", admin=True),
    ):
        refused = _login(keyward, attack)
        assert (refused.status, refused.code) == (401, "WrongIdentityProvider"), str(refused)
    assert db.snapshot(own, OTHER_ORG) == before


def test_an_organization_created_with_an_issuer_takes_only_that_issuers_tokens(keyward: StackClient, local_stack):
    org = _new_org(local_stack, "pinned", "--issuer", THIRD_ISSUER)
    # The dev IdP serves any organization not bound elsewhere: this one is bound, by its operator.
    refused = _login(keyward, keyward.idp.mint(org=org, user="bob"))
    assert (refused.status, refused.code) == (401, "WrongIdentityProvider"), str(refused)
    assert _login(keyward, THIRD_IDP.mint(org=org, user="bob", issuer=THIRD_ISSUER)).status == 200
    # And an organization bound at its first login, to the dev IdP, refuses the third IdP.
    first = _new_org(local_stack, "first-login")
    assert _login(keyward, keyward.idp.mint(org=first, user="bob")).status == 200
    refused = _login(keyward, THIRD_IDP.mint(org=first, user="bob", admin=True, issuer=THIRD_ISSUER))
    assert (refused.status, refused.code) == (401, "WrongIdentityProvider"), str(refused)


# --- offboarding ------------------------------------------------------------------------------


def test_an_offboarded_member_is_out_at_once_and_starts_over(keyward: StackClient, local_stack, db):
    org = _new_org(local_stack, "offboard")
    admin = keyward.token(org=org, user="admin", admin=True)
    bob, authenticator, key_id = keyward.member_with_key(org=org, user="bob")
    others = [keyward.mfa_login(org=org, user="bob", authenticator=authenticator) for _ in range(3)]
    pending = keyward.token(org=org, user="bob", state="mfa_required")

    reply = keyward.call("DELETE", "/org/members/bob", token=admin)
    assert reply.status == 204, str(reply)

    for token in [bob, *others, pending]:
        refused = keyward.call("GET", "/me", token=token)
        assert refused.status == 401, str(refused)
    assert db.get("members", org_id=org, user_id="bob") is None
    assert db.key(org, key_id) is None and db.get("credentials", key_id=key_id) is None
    assert [s for s in db.scan_org("sessions-v2", org) if s["user_id"]["S"] == "bob"] == []
    assert "member.offboarded" in [event["action"] for event in db.audit(org)]

    # The IdP signs them in again: a new member, without the old key, counted once.
    again = keyward.token(org=org, user="bob", state="active")
    assert keyward.key_count(again) == 0
    org_item = db.get("orgs", org_id=org)
    assert (org_item["members_total"]["N"], org_item["members_with_key"]["N"]) == ("2", "0")
    # The old key cannot pass an MFA check for the new member, and old tokens stay dead.
    assert keyward.call("GET", "/me", token=bob).status == 401
    assert keyward.call("POST", "/auth/mfa/options", token=again).code == "WrongSessionState"


def test_a_member_cannot_offboard_anyone(keyward: StackClient, local_stack, db):
    org = _new_org(local_stack, "offboard-member")
    keyward.token(org=org, user="admin", admin=True)
    bob = keyward.token(org=org, user="bob")
    refused = keyward.call("DELETE", "/org/members/admin", token=bob)
    assert (refused.status, refused.code) == (403, "AdminRequired")
    assert db.get("members", org_id=org, user_id="admin") is not None


# --- the grace period -------------------------------------------------------------------------


def _back_date_enforcement(db: StackTables, org: str, *, hours: int) -> None:
    enforced_at = db.get("orgs", org_id=org)["enforced_at"]["S"]
    moment = datetime.strptime(enforced_at, "%Y-%m-%dT%H:%M:%S.%f%z") - timedelta(hours=hours)
    db.client.update_item(
        TableName=db.table("orgs"),
        Key={"org_id": {"S": org}},
        UpdateExpression="SET enforced_at = :at",
        ExpressionAttributeValues={":at": {"S": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+0000")}},
    )


def test_a_keyless_member_works_until_the_deadline_then_must_register(keyward: StackClient, local_stack, db):
    org = _new_org(local_stack, "grace")
    admin = keyward.token(org=org, user="admin", admin=True)
    keyward.add_key(admin)
    enforced = keyward.call(
        "PUT",
        "/org/mfa",
        token=admin,
        body={"enforced": True, "grace_period_hours": 24, "without_backup_credentials": True},
    )
    assert enforced.status == 200 and enforced.body["registration_due_at"], str(enforced)

    bob = keyward.token(org=org, user="bob", state="active")
    assert keyward.me(bob).body["mfa"]["registration_due_at"] == enforced.body["registration_due_at"]
    assert keyward.call("GET", "/me/sessions", token=bob).status == 200

    _back_date_enforcement(db, org, hours=25)
    refused = keyward.call("GET", "/me/sessions", token=bob)
    assert (refused.status, refused.code) == (403, "RegistrationRequired"), str(refused)
    assert keyward.me(bob).body["session"]["state"] == "registration_required"
    assert keyward.token(org=org, user="carol", state="registration_required")
    # Registering a key is the way back in, under the token registering hands out.
    registered = keyward.add_key(bob)
    assert registered.body["session"]["state"] == "active"
    assert keyward.call("GET", "/me/sessions", token=registered.body["token"]).status == 200


# --- the enforcement reason survives clean-up ------------------------------------------------


def test_a_cleaned_up_sessions_token_still_says_enforcement_ended_it(keyward: StackClient, local_stack, db):
    org = _new_org(local_stack, "reason")
    admin = keyward.token(org=org, user="admin", admin=True)
    keyward.add_key(admin)
    bob = keyward.token(org=org, user="bob")
    keyward.enforce(admin)
    deadline = time.monotonic() + 30
    while db.get("sessions-v2", session_id=session_id_of(bob)) is not None:
        assert time.monotonic() < deadline, "the stream function did not delete the session"
        time.sleep(0.2)
    refused = keyward.call("GET", "/me", token=bob)
    assert (refused.status, refused.code) == (401, "SessionEndedByEnforcement"), str(refused)


# --- counters under parallel requests --------------------------------------------------------

# Per side: members registering their first key, and members deleting their only one, all at once.
RACERS = 50


def test_fifty_first_keys_and_fifty_last_key_deletions_at_once_are_all_counted(keyward: StackClient, local_stack, db):
    org = _new_org(local_stack, "counters")
    holders = [keyward.token(org=org, user=f"holder{n}") for n in range(RACERS)]
    held = [keyward.add_key(token).body["key"]["id"] for token in holders]
    newcomers = [keyward.token(org=org, user=f"newcomer{n}") for n in range(RACERS)]
    prepared = []
    for token in newcomers:
        options = keyward.registration_options(token).body
        credential = SoftwareAuthenticator().register(options["publicKey"], origin=keyward.origin)
        prepared.append((token, options["challenge_id"], credential))

    started = time.monotonic()
    replies = keyward.in_parallel(
        [lambda p=p: keyward.register(p[0], p[1], p[2]) for p in prepared]
        + [
            lambda t=t, k=k: keyward.call("DELETE", f"/me/mfa/keys/{k}", token=t)
            for t, k in zip(holders, held, strict=True)
        ]
    )
    print(f"{2 * RACERS} requests at once answered in {time.monotonic() - started:.1f} s")

    # Every member got their success: no conflict, no lost update reached anyone.
    assert [r.status for r in replies] == [201] * RACERS + [204] * RACERS, [
        str(r) for r in replies if r.status not in (201, 204)
    ]
    members = db.query_org("members", org)
    recount = (len(members), sum(int(member["key_count"]["N"]) > 0 for member in members))
    assert recount == (2 * RACERS, RACERS)
    assert {member["user_id"]["S"] for member in members if member["key_count"]["N"] != "0"} == {
        f"newcomer{n}" for n in range(RACERS)
    }
    # Each key stored is a newcomer's: the deletions went through and so did the registrations.
    assert sorted(key["user_id"]["S"] for key in db.query_org("keys", org)) == sorted(
        f"newcomer{n}" for n in range(RACERS)
    )
    org_item = db.get("orgs", org_id=org)
    assert (int(org_item["members_total"]["N"]), int(org_item["members_with_key"]["N"])) == recount
    admin = keyward.token(org=org, user="admin", admin=True)
    status = keyward.call("GET", "/org/mfa", token=admin).body
    assert (status["members_total"], status["members_compliant"]) == (2 * RACERS + 1, RACERS)
