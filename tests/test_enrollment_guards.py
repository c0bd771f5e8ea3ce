"""The enrolment passes' guards on whose pass it is, each tested with fixed member IDs just below
and just above the real one, so that an equality weakened to ``<=`` or ``>=`` fails a test
instead of passing by the chance of random IDs: a member's list shows only their passes, and a
pass is revoked only under its own member's path."""
from __future__ import annotations

import pytest

from chalicelib.models import EnrollmentPass
from tests.authenticator import SoftwareAuthenticator

AROUND = ["user-a", "user-z"]  # below and above user-m


@pytest.fixture
def admin(api):
    alice = api.login(user="alice", admin=True)
    key = SoftwareAuthenticator()
    assert api.add_key(alice, key).status == 201
    return api.mfa_login(org="acme", user="alice", authenticator=key, admin=True)


def _issue(api, admin, user: str) -> dict:
    reply = api.call("POST", f"/org/members/{user}/enrollment-passes", token=admin.token, body={})
    assert reply.status == 201, reply.body
    return reply.body


def test_a_members_passes_are_listed_without_those_of_members_whose_ids_sort_around_theirs(api, admin):
    for user in ["user-a", "user-m", "user-z"]:
        api.login(user=user)
    mine = _issue(api, admin, "user-m")
    for other in AROUND:
        _issue(api, admin, other)

    listed = api.call("GET", "/org/members/user-m/enrollment-passes", token=admin.token)

    assert listed.status == 200
    assert [listed_pass["id"] for listed_pass in listed.body["enrollment_passes"]] == [mine["id"]]


@pytest.mark.parametrize("path_user", AROUND)
def test_a_pass_is_revoked_only_under_its_own_members_path(api, admin, path_user):
    for user in ["user-m", path_user]:
        api.login(user=user)
    issued = _issue(api, admin, "user-m")

    reply = api.call("DELETE", f"/org/members/{path_user}/enrollment-passes/{issued['id']}", token=admin.token)

    assert (reply.status, reply.code) == (404, "EnrollmentPassNotFound")
    assert EnrollmentPass.get("acme", issued["id"], consistent_read=True).revoked_at is None
