"""Enforcing MFA: the PUT, the request-time rule, and the stream function that ends sessions in bulk."""
from __future__ import annotations

import pytest

from chalicelib.models import Organization, Session
from tests.authenticator import SoftwareAuthenticator


@pytest.fixture
def admin(api):
    """alice, an admin with a key, signed in through MFA."""
    alice = api.login(user="alice", admin=True)
    key = SoftwareAuthenticator()
    assert api.add_key(alice, key).status == 201
    return api.mfa_login(org="acme", user="alice", authenticator=key, admin=True)


def _session_ids(org="acme") -> set[str]:
    return {s.session_id for s in Session.query(org, consistent_read=True)}


def _session_id(member) -> str:
    return member.token.split(".")[3]


def _enforce(api, admin, enforced=True):
    return api.call("PUT", "/org/mfa", token=admin.token, body={"enforced": enforced})


def test_enforcing_records_who_when_and_from_which_session(api, admin):
    reply = _enforce(api, admin)

    assert reply.status == 200, reply.body
    assert reply.body["enforced"] is True
    assert reply.body["enforced_by"] == "alice"
    assert reply.body["enforced_at"].endswith("Z")
    assert reply.body["invalidation"]["state"] == "running"
    org = Organization.get("acme")
    assert org.enforcing_session_id == _session_id(admin)
    assert org.enforcement_generation == 1


def test_an_admin_without_a_key_cannot_enforce(api):
    alice = api.login(user="alice", admin=True)
    reply = _enforce(api, alice)
    assert (reply.status, reply.code) == (409, "SecurityKeyRequired")
    assert Organization.get("acme").mfa_enforced is False


def test_a_refused_enforcement_leaves_the_stream_to_the_next_accepted_one(api, stream):
    """A cancelled transaction writes no stream record, and the stream goes on after it."""
    keyless = api.login(org="other", user="carol", admin=True)
    alice, bob = api.login(user="alice", admin=True), api.login(user="bob")
    assert api.add_key(alice, SoftwareAuthenticator()).status == 201
    stream.drain()

    assert _enforce(api, keyless).code == "SecurityKeyRequired"
    assert stream.drain() == 0
    assert _enforce(api, alice).status == 200
    stream.drain()

    assert _session_id(bob) not in _session_ids()
    assert Organization.get("acme").invalidation.state == "done"


def test_members_cannot_read_or_change_the_setting(api, admin):
    bob = api.login(user="bob")
    for method, body in (("GET", None), ("PUT", {"enforced": True})):
        reply = api.call(method, "/org/mfa", token=bob.token, body=body)
        assert (reply.status, reply.code) == (403, "AdminRequired")
    assert Organization.get("acme").mfa_enforced is False


@pytest.mark.parametrize("body", [{"enforced": "yes"}, {"enforced": 1}, {}, {"enforced": True, "enforced_by": "x"}])
def test_a_malformed_setting_is_refused(api, admin, body):
    reply = api.call("PUT", "/org/mfa", token=admin.token, body=body)
    assert (reply.status, reply.code) == (400, "MalformedRequest")
    assert Organization.get("acme").mfa_enforced is False


def test_from_the_moment_it_returns_other_sessions_are_refused_and_the_callers_goes_on(api, admin):
    bob, alices_laptop = api.login(user="bob"), api.login(user="alice", admin=True)
    assert _enforce(api, admin).status == 200

    for member in (bob, alices_laptop):
        reply = api.call("GET", "/me", token=member.token)
        assert (reply.status, reply.code) == (401, "SessionEndedByEnforcement")
    assert api.call("GET", "/org/mfa", token=admin.token).status == 200


def test_the_stream_function_deletes_the_ended_sessions_sparing_the_enforcing_one(api, admin, stream):
    others = [api.login(user=f"user{i}") for i in range(30)]
    assert len(_session_ids()) > len(others)

    _enforce(api, admin)
    stream.drain()

    assert _session_ids() == {_session_id(admin)}
    status = api.call("GET", "/org/mfa", token=admin.token).body["invalidation"]
    # alice's first session, in which she registered her key, ended too.
    assert status["state"] == "done"
    assert status["sessions_ended"] == len(others) + 1
    assert status["finished_at"] is not None
    assert all(api.call("GET", "/me", token=m.token).status == 401 for m in others[:3])


def test_sessions_started_after_the_enforcement_survive_the_clean_up(api, admin, stream):
    api.login(user="bob")
    _enforce(api, admin)
    carol = api.login(user="carol")
    assert carol.state == "registration_required"
    stream.drain()
    assert api.call("GET", "/me", token=carol.token).status == 200


def test_relaxing_ends_no_session_and_enforcing_again_is_a_new_enforcement(api, admin, stream):
    _enforce(api, admin)
    stream.drain()
    bob = api.login(user="bob")

    relaxed = _enforce(api, admin, enforced=False)
    assert relaxed.status == 200
    assert relaxed.body["enforced"] is False
    stream.drain()
    assert api.call("GET", "/me", token=bob.token).status == 200
    assert api.login(user="carol").state == "active"

    again = _enforce(api, admin)
    assert again.body["enforced"] is True
    assert Organization.get("acme").enforcement_generation == 2
    assert api.call("GET", "/me", token=bob.token).code == "SessionEndedByEnforcement"
    stream.drain()
    assert _session_ids() == {_session_id(admin)}


def test_enforcing_twice_is_one_enforcement(api, admin, stream):
    _enforce(api, admin)
    bob = api.login(user="bob")
    assert _enforce(api, admin).status == 200
    assert Organization.get("acme").enforcement_generation == 1
    assert api.call("GET", "/me", token=bob.token).status == 200


def test_an_operator_enforcing_in_the_console_ends_every_session(api, admin, stream):
    bob = api.login(user="bob")
    Organization("acme").update(actions=[Organization.mfa_enforced.set(True)])  # outside the API

    assert api.call("GET", "/me", token=bob.token).code == "SessionEndedByEnforcement"
    stream.drain()

    assert _session_ids() == set()
    org = Organization.get("acme")
    assert (org.enforced_by, org.enforcement_generation, org.invalidation.state) == ("operator", 1, "done")
    alice = api.mfa_login(org="acme", user="alice", authenticator=admin.authenticators[0], admin=True)
    shown = api.call("GET", "/org/mfa", token=alice.token).body
    assert (shown["enforced"], shown["enforced_by"]) == (True, "operator")


def test_other_changes_of_the_org_do_not_trigger_a_clean_up(api, admin, stream):
    api.login(user="bob")
    Organization("acme").update(actions=[Organization.enforced_by.set("nobody")])
    stream.drain()
    assert len(_session_ids()) == 3


def test_after_enforcement_members_without_a_key_must_register_and_key_holders_pass_mfa(api, admin):
    bob = api.login(user="bob")
    bobs_key = SoftwareAuthenticator()
    api.add_key(bob, bobs_key)
    _enforce(api, admin)

    assert api.login(user="carol").state == "registration_required"
    assert api.login(user="bob").state == "mfa_required"
