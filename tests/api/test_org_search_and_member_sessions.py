"""Organization settings by member: ``?search=`` on GET /org/members and GET /org/mfa/keys (the
start of a user ID, one query on the sort key, paged like the whole lists), and
GET /org/members/{user_id}/sessions (a member's sessions as an admin sees them)."""

from __future__ import annotations

import base64
import json

import pytest

from chalicelib.base.models import SecurityKey
from tests.support.sessions import org_sessions

USERS = ["m1", "m10", "m11", "m2", "n1"]


def _pages(api, token: str, path: str, field: str, *, limit: int, query: str) -> list[list[dict]]:
    """Every page of a list, following ``next`` until it is null."""
    pages, cursor = [], None
    for _ in range(100):
        url = f"{path}?limit={limit}{query}" + (f"&next={cursor}" if cursor else "")
        reply = api.call("GET", url, token=token)
        assert reply.status == 200, reply.body
        pages.append(reply.body[field])
        cursor = reply.body["next"]
        if cursor is None:
            return pages
    raise AssertionError("the list never ended")


def _cursor(document) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


@pytest.fixture
def alice(api):
    """alice (admin, no key) and five members of two keys each: m1, m10, m11, m2, n1."""
    admin = api.login(user="alice", admin=True)
    for user in USERS:
        member = api.login(user=user)
        for n in range(2):
            assert api.add_key(member, name=f"{user} key {n}").status == 201
    return admin


# --- GET /org/members?search= -----------------------------------------------------------------


def test_searching_members_lists_those_whose_user_id_starts_with_it_page_by_page(api, alice):
    pages = _pages(api, alice.token, "/org/members", "members", limit=2, query="&search=m1")

    ids = [member["id"] for page in pages for member in page]
    assert ids == ["m1", "m10", "m11"]


def test_searching_members_by_key_count_narrows_that_list(api, alice):
    api.login(user="m100")  # no key

    reply = api.call("GET", "/org/members?mfa=none&search=m1", token=alice.token)

    assert reply.status == 200, reply.body
    assert [member["id"] for member in reply.body["members"]] == ["m100"]


def test_a_search_matching_nobody_is_an_empty_list(api, alice):
    reply = api.call("GET", "/org/members?search=zz", token=alice.token)
    assert (reply.status, reply.body) == (200, {"members": [], "next": None})


def test_an_empty_search_lists_everyone(api, alice):
    reply = api.call("GET", "/org/members?search=", token=alice.token)
    assert reply.status == 200, reply.body
    assert {member["id"] for member in reply.body["members"]} == {"alice", *USERS}


def test_searching_members_shows_only_the_callers_org(api, alice):
    api.login(org="umbrella", user="m1x")
    reply = api.call("GET", "/org/members?search=m1", token=alice.token)
    assert [member["id"] for member in reply.body["members"]] == ["m1", "m10", "m11"]


@pytest.mark.parametrize("path", ["/org/members", "/org/mfa/keys"])
@pytest.mark.parametrize("search", ["x" * 256, "a%0Ab"], ids=["too-long", "not-printable"])
def test_a_search_no_user_id_could_start_with_is_refused(api, alice, path, search):
    reply = api.call("GET", f"{path}?search={search}", token=alice.token)
    assert (reply.status, reply.code) == (400, "MalformedRequest")


# --- GET /org/mfa/keys?search= ----------------------------------------------------------------


def test_searching_keys_lists_the_keys_of_members_whose_user_id_starts_with_it_page_by_page(api, alice):
    pages = _pages(api, alice.token, "/org/mfa/keys", "keys", limit=2, query="&search=m1")

    shown = [key for page in pages for key in page]
    assert [key["user"]["id"] for key in shown] == ["m1", "m1", "m10", "m10", "m11", "m11"]
    expected = {k.key_id for k in SecurityKey.query("acme", consistent_read=True) if k.user_id.startswith("m1")}
    assert len(shown) == len(expected) and {key["id"] for key in shown} == expected
    assert {key["user"]["name"] for key in shown} == {"M1", "M10", "M11"}


@pytest.mark.parametrize("also", ["&user_id=m1", "&compliant=false"])
def test_searching_keys_goes_alone(api, alice, also):
    reply = api.call("GET", f"/org/mfa/keys?search=m{also}", token=alice.token)
    assert (reply.status, reply.code) == (400, "MalformedRequest")


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!!",
        _cursor({"after": "m1"}),  # a cursor of the whole list
        _cursor({"after": {"user_id": "m1"}}),
        _cursor({"after": {"user_id": "m1", "key_id": ""}}),
        _cursor({"after": {"user_id": "m1", "key_id": 5}}),
        _cursor({"after": {"user_id": "x" * 1025, "key_id": "k"}}),
    ],
    ids=["junk", "whole-list", "no-key-id", "empty", "number", "too-long"],
)
def test_a_search_cursor_this_api_did_not_return_is_refused(api, alice, cursor):
    reply = api.call("GET", f"/org/mfa/keys?search=m&next={cursor}", token=alice.token)
    assert (reply.status, reply.code) == (400, "InvalidCursor")


# --- GET /org/members/{user_id}/sessions -----------------------------------------------------


def test_an_admin_sees_a_members_sessions_and_after_ending_them_none(api):
    alice = api.login(user="alice", admin=True)
    first, second = api.login(user="bob"), api.login(user="bob")

    reply = api.call("GET", "/org/members/bob/sessions", token=alice.token)

    assert reply.status == 200, reply.body
    stored = {s.session_id for s in (s for s in org_sessions("acme") if s.user_id == "bob")}
    assert len(stored) == 2 and {session["id"] for session in reply.body["sessions"]} == stored
    assert all(session["current"] is False and session["state"] == "active" for session in reply.body["sessions"])
    assert api.call("GET", "/me", token=first.token).status == 200 and second.token

    assert api.call("DELETE", "/org/members/bob/sessions", token=alice.token).status == 204
    assert api.call("GET", "/org/members/bob/sessions", token=alice.token).body == {"sessions": []}


def test_an_admin_sees_her_own_sessions_with_the_current_one_marked(api):
    api.login(user="alice", admin=True)
    alice = api.login(user="alice", admin=True)

    reply = api.call("GET", "/org/members/alice/sessions", token=alice.token)

    assert reply.status == 200, reply.body
    assert sorted(session["current"] for session in reply.body["sessions"]) == [False, True]


def test_sessions_ended_by_a_rule_are_not_listed(api):
    alice = api.login(user="alice", admin=True)
    api.login(user="bob")
    registering = api.login(user="bob")
    # A first key ends the member's other sessions from before it; the one registering it goes on.
    assert api.add_key(registering, name="bob key").status == 201

    reply = api.call("GET", "/org/members/bob/sessions", token=alice.token)

    assert reply.status == 200, reply.body
    stored = [s for s in org_sessions("acme") if s.user_id == "bob"]
    assert len(stored) == 2 and len(reply.body["sessions"]) == 1


@pytest.mark.parametrize("user", ["nobody", "backup:nothing", "x" * 300])
def test_the_sessions_of_no_such_member_are_not_found(api, user):
    alice = api.login(user="alice", admin=True)
    reply = api.call("GET", f"/org/members/{user}/sessions", token=alice.token)
    assert (reply.status, reply.code) == (404, "MemberNotFound")


def test_another_orgs_member_is_not_found(api):
    alice = api.login(user="alice", admin=True)
    api.login(org="umbrella", user="uma")
    reply = api.call("GET", "/org/members/uma/sessions", token=alice.token)
    assert (reply.status, reply.code) == (404, "MemberNotFound")


def test_a_member_may_not_see_anothers_sessions(api):
    api.login(user="alice", admin=True)
    bob = api.login(user="bob")
    api.login(user="carol")
    reply = api.call("GET", "/org/members/carol/sessions", token=bob.token)
    assert (reply.status, reply.code) == (403, "AdminRequired")
