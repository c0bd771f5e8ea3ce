"""MFA enforcement end to end on the running local stack (``python -m devstack run``): chalice
local serving real, parallel HTTP requests, moto's DynamoDB, and the organizations table's stream
pumped into the stream function that deletes ended sessions.

The tests share one stack. Each uses organizations of its own, except the enforcement test,
which uses the demo organization ``acme`` the stack seeds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from tests.support.authenticator import SoftwareAuthenticator
from tests.support.local_stack import LocalStack
from tests.support.stack_client import Reply, StackClient, session_id_of

# The stream is polled every 0.25 s; deleting a few dozen sessions takes well under a second.
INVALIDATION_TIMEOUT_SECONDS = 5.0
DELETE_ROUNDS = 5
SESSIONS_TABLE = "keyward-sessions-v2"
# What a member who must register a key may still call (beside the public /auth/login).
REGISTRATION_ALLOWED = {
    ("GET", "/me"),
    ("POST", "/me/mfa/keys/options"),
    ("POST", "/me/mfa/keys"),
    ("POST", "/auth/logout"),
}


@pytest.fixture(scope="module")
def sessions_table(local_stack: LocalStack) -> Callable[[str], set[str]]:
    """The session IDs of an organization, as the stack's DynamoDB holds them right now."""
    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=local_stack.dynamodb,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )

    def session_ids(org_id: str) -> set[str]:
        found: set[str] = set()
        # Sessions are keyed by their own ID: a strongly consistent scan for those naming the organization.
        for page in dynamodb.get_paginator("scan").paginate(
            TableName=SESSIONS_TABLE,
            FilterExpression="org_id = :org",
            ExpressionAttributeValues={":org": {"S": org_id}},
            ConsistentRead=True,
        ):
            found.update(item["session_id"]["S"] for item in page["Items"])
        return found

    return session_ids


def assert_ended_by_enforcement(replies: dict[str, Reply], stored_session_ids: set[str]) -> None:
    """Each session answered 401 SessionEndedByEnforcement — or, once the stream function has
    deleted it (``stored_session_ids`` is read after the replies), 401 InvalidToken.

    The deletion follows the enforcement within a fraction of a second, often in the middle of a
    burst of requests, so which of the two a session answers is a race; a session still stored
    must never be taken for an unknown token, and none may get through.
    """
    wrong = [
        f"session {session_id_of(token)} "
        f"({'stored' if session_id_of(token) in stored_session_ids else 'deleted'}): {reply}"
        for token, reply in replies.items()
        if (reply.status, reply.code) != (401, "SessionEndedByEnforcement")
        and not ((reply.status, reply.code) == (401, "InvalidToken") and session_id_of(token) not in stored_session_ids)
    ]
    assert not wrong, f"sessions ended by the enforcement must answer 401 SessionEndedByEnforcement: {wrong}"


def enforced_org(keyward: StackClient, org: str, *, admin: str = "admin") -> str:
    """An organization whose admin registered a key and enforced MFA; the admin's active token."""
    token = keyward.login(org=org, user=admin, admin=True).body["token"]
    keyward.add_key(token, name="Admin key")
    keyward.enforce(token)
    return token


# --- 1. enforcement deletes the other sessions ------------------------------------------------


def test_enforcing_mfa_ends_every_other_session_and_the_stream_function_deletes_them(
    keyward, sessions_table, stack_log
):
    org = "acme"
    alice_key = SoftwareAuthenticator()
    first = keyward.login(org=org, user="alice", admin=True)
    assert first.body["state"] == "active", f"alice, no key yet: {first}"
    keyward.add_key(first.body["token"], alice_key, name="Alice's key")
    alice = keyward.mfa_login(org=org, user="alice", authenticator=alice_key, admin=True)

    members = [user for user in ("bob", "carol", "dave", "erin", "frank") for _ in range(4)]
    logins = keyward.in_parallel([lambda user=user: keyward.login(org=org, user=user) for user in members])
    assert [login.body["state"] for login in logins] == ["active"] * len(members), [str(login) for login in logins]
    # alice's first session (the one she registered her key in) is one of the others, too.
    others = [first.body["token"], *(login.body["token"] for login in logins)]
    before = keyward.in_parallel([lambda token=token: keyward.call("GET", "/me", token=token) for token in others])
    assert [reply.status for reply in before] == [200] * len(others), [str(reply) for reply in before]
    assert sessions_table(org) == {session_id_of(alice), *map(session_id_of, others)}

    # The other sessions ask the moment the enforcement returns, before the stream function
    # has had time to delete them.
    enforcement: list[Reply] = []
    ended = keyward.in_parallel(
        [lambda token=token: keyward.call("GET", "/me", token=token) for token in others],
        first=lambda: enforcement.append(keyward.enforce(alice)),
    )
    [enforced] = enforcement
    alice_me = keyward.call("GET", "/me", token=alice)

    assert enforced.body["enforced_by"] == "alice", str(enforced)
    assert_ended_by_enforcement(dict(zip(others, ended, strict=True)), sessions_table(org))
    assert alice_me.status == 200, f"the enforcing session must survive: {alice_me}"
    assert alice_me.body["session"]["state"] == "active", str(alice_me)
    assert alice_me.body["org"]["mfa_enforced"] is True, str(alice_me)

    deadline = time.monotonic() + INVALIDATION_TIMEOUT_SECONDS
    remaining = sessions_table(org)
    while remaining != {session_id_of(alice)} and time.monotonic() < deadline:
        time.sleep(0.1)
        remaining = sessions_table(org)
    assert remaining == {session_id_of(alice)}, (
        f"{INVALIDATION_TIMEOUT_SECONDS}s after the enforcement the sessions table should hold only alice's "
        f"current session {session_id_of(alice)}; it holds {sorted(remaining)}"
    )

    status = keyward.call("GET", "/org/mfa", token=alice)
    while (
        status.status != 200 or (status.body["invalidation"] or {}).get("state") != "done"
    ) and time.monotonic() < deadline:
        time.sleep(0.1)
        status = keyward.call("GET", "/org/mfa", token=alice)
    assert status.status == 200, str(status)
    assert status.body["invalidation"] is not None, str(status)
    assert status.body["invalidation"]["state"] == "done", str(status)
    assert status.body["invalidation"]["sessions_ended"] == len(others), str(status)
    assert status.body["invalidation"]["finished_at"] is not None, str(status)
    after = keyward.in_parallel([lambda token=token: keyward.call("GET", "/me", token=token) for token in others])
    assert [reply.status for reply in after] == [401] * len(others), [str(reply) for reply in after]


# --- 2. parallel deletes never take a member's last key ---------------------------------------


def _delete_race_rounds(
    keyward: StackClient, token: str, keys: dict[str, SoftwareAuthenticator], *, count: int, rounds: int
) -> None:
    """``rounds`` times: top the member up to ``count`` keys, delete them all at once, and check
    that the last one survives."""
    for round_number in range(1, rounds + 1):
        while len(keys) < count:
            authenticator = SoftwareAuthenticator()
            added = keyward.add_key(token, authenticator, name=f"Round {round_number} key {len(keys)}")
            keys[added.body["key"]["id"]] = authenticator
        assert sorted(keyward.key_ids(token)) == sorted(keys), f"round {round_number}"
        assert keyward.key_count(token) == count, f"round {round_number}: key_count before the deletes"
        survivor = keyward.race_to_delete_every_key(token, keys, label=f"round {round_number}")
        for key_id in [key_id for key_id in keys if key_id != survivor]:
            del keys[key_id]


def test_two_parallel_deletes_under_enforcement_leave_exactly_one_key(keyward, sessions_table, stack_log):
    org = "race-two"
    first_key, second_key = SoftwareAuthenticator(), SoftwareAuthenticator()
    bob = keyward.login(org=org, user="bob").body["token"]
    keys = {
        keyward.add_key(bob, key, name=name).body["key"]["id"]: key
        for key, name in ((first_key, "First key"), (second_key, "Second key"))
    }
    enforced_org(keyward, org)
    assert_ended_by_enforcement({bob: keyward.call("GET", "/me", token=bob)}, sessions_table(org))

    bob = keyward.mfa_login(org=org, user="bob", authenticator=first_key)

    _delete_race_rounds(keyward, bob, keys, count=2, rounds=DELETE_ROUNDS)


def test_three_parallel_deletes_under_enforcement_leave_exactly_one_key(keyward, stack_log):
    org = "race-three"
    enforced_org(keyward, org)
    # Enforced before carol ever signed in: she registers her first key to get in.
    login = keyward.login(org=org, user="carol")
    assert login.body["state"] == "registration_required", str(login)
    carol = login.body["token"]
    first_key = SoftwareAuthenticator()
    registered = keyward.add_key(carol, first_key, name="First key")
    assert registered.body["session"]["state"] == "active", str(registered)
    # Registering activated the session under a new token.
    carol = registered.body["token"]

    _delete_race_rounds(keyward, carol, {registered.body["key"]["id"]: first_key}, count=3, rounds=3)


# --- 3. registration_required -----------------------------------------------------------------


def _session_calls(keyward: StackClient, *, key_id: str, user_id: str) -> list[tuple[str, str, str]]:
    """Every (method, concrete path, route) the app serves that needs a session — those that
    refuse an anonymous caller with 401 MissingToken — with ``{...}`` filled in."""
    from app import app

    values = {"key_id": key_id, "user_id": user_id}
    calls = []
    for path, methods in app.routes.items():
        concrete = re.sub(r"\{(\w+)\}", lambda name: values.get(name.group(1), "x"), path)
        for method in methods:
            calls.append((method, concrete, path))
    anonymous = keyward.in_parallel(
        [
            lambda method=method, concrete=concrete: keyward.call(method, concrete, body=_body_for(method))
            for method, concrete, _ in calls
        ]
    )
    return sorted(
        call
        for call, reply in zip(calls, anonymous, strict=True)
        if (reply.status, reply.code) == (401, "MissingToken")
    )


def _body_for(method: str) -> Any:
    return {} if method in ("POST", "PUT", "PATCH") else None


@pytest.mark.parametrize("admin", [False, True], ids=["member", "admin"])
def test_a_member_without_a_key_must_register_one_before_anything_else(keyward, admin, stack_log):
    org = f"enroll-{'admin' if admin else 'member'}"
    admin_token = enforced_org(keyward, org, admin="eve")
    [admin_key] = keyward.key_ids(admin_token)
    user = "oscar" if admin else "nina"

    # A session that must register can still log out.
    leaving = keyward.login(org=org, user=user, admin=admin)
    assert leaving.body["state"] == "registration_required", str(leaving)
    logout = keyward.call("POST", "/auth/logout", token=leaving.body["token"])
    assert logout.status == 204, f"POST /auth/logout: {logout}"
    gone = keyward.call("GET", "/me", token=leaving.body["token"])
    assert gone.status == 401, f"GET /me after logout: {gone}"

    login = keyward.login(org=org, user=user, admin=admin)
    assert login.body["state"] == "registration_required", str(login)
    assert login.body["org"] == {"id": org, "mfa_enforced": True}, str(login)
    token = login.body["token"]
    me = keyward.call("GET", "/me", token=token)
    assert me.status == 200, f"GET /me: {me}"
    assert me.body["session"]["state"] == "registration_required", str(me)
    assert me.body["mfa"] == {
        "enabled": False,
        "key_count": 0,
        "registration_due_at": None,
        "enrollment_code_required": False,
    }, str(me)

    calls = _session_calls(keyward, key_id=admin_key, user_id="eve")
    refused_calls = [
        (method, concrete, path) for method, concrete, path in calls if (method, path) not in REGISTRATION_ALLOWED
    ]
    assert {(method, path) for method, _, path in calls} >= REGISTRATION_ALLOWED | {
        ("GET", "/me/mfa/keys"),
        ("DELETE", "/me/mfa/keys/{key_id}"),
        ("GET", "/org/mfa"),
        ("PUT", "/org/mfa"),
    }, f"the calls that need a session are not what this test expects: {calls}"
    replies = keyward.in_parallel(
        [
            lambda method=method, concrete=concrete: keyward.call(method, concrete, token=token, body=_body_for(method))
            for method, concrete, _ in refused_calls
        ]
    )
    wrong = [
        f"{method} {concrete}: {reply}"
        for (method, concrete, _), reply in zip(refused_calls, replies, strict=True)
        if (reply.status, reply.code) != (403, "RegistrationRequired")
    ]
    assert not wrong, f"calls a registration_required session must be refused with 403 RegistrationRequired: {wrong}"
    # Nothing of the refused calls changed anything: the admin's key is still there.
    assert keyward.key_ids(admin_token) == [admin_key]

    registered = keyward.add_key(token, name="My first key")
    assert registered.body["session"]["state"] == "active", str(registered)
    refused = keyward.call("GET", "/me", token=token)
    assert (refused.status, refused.code) == (401, "InvalidToken"), f"the token before registering: {refused}"
    token = registered.body["token"]

    me = keyward.call("GET", "/me", token=token)
    assert me.status == 200, f"GET /me after registering: {me}"
    assert me.body["session"]["state"] == "active", str(me)
    assert me.body["mfa"] == {
        "enabled": True,
        "key_count": 1,
        "registration_due_at": None,
        "enrollment_code_required": False,
    }, str(me)
    assert keyward.key_ids(token) == [registered.body["key"]["id"]]
    if admin:
        status = keyward.call("GET", "/org/mfa", token=token)
        assert status.status == 200, f"GET /org/mfa of an admin who registered: {status}"
