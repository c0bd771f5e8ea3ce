"""Sessions keyed by their own ID and found through the write-sharded by-org-shard index: a
member's sessions are one query, a token names its session whatever organization it claims, and
ending every session of a member holds for a session the (eventually consistent) index has not
listed yet."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.access import sessions
from chalicelib.base.models import SESSION_SHARDS, Session, member_session_key, org_shard_key, session_shard
from tests.support.sessions import org_sessions


def _sid(token: str) -> str:
    return token.split(".")[3]


def test_an_organizations_sessions_spread_over_shards_and_a_members_share_one(api):
    bob_tokens = [api.login(user="bob").token for _ in range(3)]
    for user in ("carol", "dave", "erin"):
        api.login(user=user)

    stored = org_sessions("acme")

    assert len({session.session_id for session in stored}) == 6
    for session in stored:
        assert session.org_shard == org_shard_key("acme", session_shard(session.user_id))
        assert session.member_session == member_session_key(session.user_id, session.session_id)
        assert 0 <= session_shard(session.user_id) < SESSION_SHARDS
    assert {s.org_shard for s in stored if s.user_id == "bob"} == {org_shard_key("acme", session_shard("bob"))}
    assert {_sid(token) for token in bob_tokens} == {s.session_id for s in stored if s.user_id == "bob"}


def test_a_members_sessions_are_one_query_of_one_shard(api, monkeypatch):
    bob = api.login(user="bob")
    others = [api.login(user="bob").token for _ in range(2)]
    api.login(user="bob#2")  # shares bob's prefix in the index's sort key, not his sessions
    api.login(user="carol")
    queries: list[Any] = []
    real = Session.by_org_shard.query

    def counting(hash_key: str, *args: Any, **kwargs: Any) -> Any:
        queries.append(hash_key)
        return real(hash_key, *args, **kwargs)

    monkeypatch.setattr(Session.by_org_shard, "query", counting)

    reply = api.call("GET", "/me/sessions", token=bob.token)

    assert reply.status == 200
    assert {s["id"] for s in reply.body["sessions"]} == {_sid(bob.token), *map(_sid, others)}
    assert queries == [org_shard_key("acme", session_shard("bob"))]


def test_a_token_naming_another_organization_than_its_session_is_refused(api):
    bob = api.login(org="acme", user="bob")
    api.login(org="other", user="bob")
    _, _, user, session_id, secret = bob.token.split(".")
    forged = ".".join(("kw1", "b3RoZXI", user, session_id, secret))  # "other"

    assert api.call("GET", "/me", token=forged).status == 401
    assert api.call("GET", "/me", token=bob.token).status == 200


def test_ending_ones_own_session_by_id_needs_it_to_be_of_ones_own_organization(api):
    bob = api.login(org="acme", user="bob")
    other_bob = api.login(org="other", user="bob")

    reply = api.call("DELETE", f"/me/sessions/{_sid(other_bob.token)}", token=bob.token)

    assert (reply.status, reply.code) == (404, "SessionNotFound")
    assert api.call("GET", "/me", token=other_bob.token).status == 200


@pytest.fixture
def index_lags(monkeypatch):
    """The index has not listed the newest session of each member yet, as a global secondary
    index may not for a moment after the session's write."""

    real = sessions.stored_sessions_of

    def lagging(**kwargs: Any) -> Any:
        found = list(real(**kwargs))
        # The newest by its start: the index sorts a member's sessions by session ID, whose
        # time prefix ties for sessions started within one tick.
        newest = max(found, key=lambda session: session.created_at, default=None)
        return [session for session in found if session is not newest]

    monkeypatch.setattr(sessions, "stored_sessions_of", lagging)


def test_signing_out_everywhere_else_ends_a_session_the_index_has_not_listed_yet(api, index_lags):
    bob = api.login(user="bob")
    older = api.login(user="bob")
    just_started = api.login(user="bob")  # a moment before the sign-out: not in the index yet

    assert api.call("DELETE", "/me/sessions", token=bob.token).status == 204

    assert _sid(just_started.token) in {s.session_id for s in org_sessions("acme")}  # not deleted...
    assert api.call("GET", "/me", token=just_started.token).status == 401  # ...but ended
    assert api.call("GET", "/me", token=older.token).status == 401
    assert api.call("GET", "/me", token=bob.token).status == 200  # the caller's own goes on
    later = api.login(user="bob")
    assert api.call("GET", "/me", token=later.token).status == 200  # and a new sign-in works


def test_an_admin_ending_a_members_sessions_ends_one_the_index_has_not_listed_yet(api, admin, index_lags):
    older = api.login(user="bob")
    just_started = api.login(user="bob")

    assert api.call("DELETE", "/org/members/bob/sessions", token=admin.token).status == 204

    assert api.call("GET", "/me", token=just_started.token).status == 401
    assert api.call("GET", "/me", token=older.token).status == 401
    assert api.call("GET", "/me", token=admin.token).status == 200
    assert api.call("GET", "/me", token=api.login(user="bob").token).status == 200


def test_a_session_that_read_the_member_before_the_sign_out_and_wrote_after_it_is_ended(api, monkeypatch):
    """The race itself: a login reads the member, an end of every session of theirs commits, then
    the login writes its session. Neither the index nor a consistent read at the end could have
    found the session; the generation it carries, read before the end, ends it."""
    bob = api.login(user="bob")
    real_start = sessions.start

    def start_after_an_end(**kwargs: Any) -> Any:
        if kwargs["member"].user_id == "bob":
            assert api.call("DELETE", "/me/sessions", token=bob.token).status == 204
        return real_start(**kwargs)

    monkeypatch.setattr(sessions, "start", start_after_an_end)
    raced = api.login_reply(user="bob")
    monkeypatch.undo()

    assert raced.status == 200
    assert api.call("GET", "/me", token=raced.body["token"]).status == 401
    assert api.call("GET", "/me", token=bob.token).status == 200
