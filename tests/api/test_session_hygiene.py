"""Session hygiene: a member's view of their own sessions, ending them, an admin ending a
member's sessions, key deletions ending the sessions verified with the key, and last_seen_at."""

from __future__ import annotations

from datetime import timedelta

import pytest

from chalicelib.base import clock
from chalicelib.base.models import AuditEvent, Session
from tests.support.audit_log import logged_events
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.keyward_client import USER_AGENT


def _sid(member) -> str:
    return member.token.split(".")[3]


def _works(api, member) -> bool:
    reply = api.call("GET", "/me", token=member.token)
    assert reply.status in (200, 401), reply.body
    return reply.status == 200


def _logged(action: str) -> list[AuditEvent]:
    return [e for e in logged_events("acme") if e.action == action]


# --- GET /me/sessions -----------------------------------------------------------------------------


def test_the_list_shows_the_callers_own_sessions_newest_first(api):
    first, second, third = (api.login(user="bob") for _ in range(3))
    carol = api.login(user="carol")
    expired = api.login(user="bob")
    Session(_sid(expired)).update(actions=[Session.expires_at.set(clock.now() - timedelta(seconds=1))])

    reply = api.call("GET", "/me/sessions", token=second.token)

    assert reply.status == 200, reply.body
    shown = reply.body["sessions"]
    assert [s["id"] for s in shown] == [_sid(third), _sid(second), _sid(first)]
    assert [s["current"] for s in shown] == [False, True, False]
    assert [s["created_at"] for s in shown] == sorted((s["created_at"] for s in shown), reverse=True)
    for session in shown:
        assert set(session) == {
            "id",
            "state",
            "created_at",
            "expires_at",
            "last_seen_at",
            "source_ip",
            "user_agent",
            "current",
        }
        assert session["state"] == "active"
        assert session["created_at"].endswith("Z") and session["expires_at"] > session["created_at"]
        assert session["last_seen_at"] >= session["created_at"]
        assert (session["source_ip"], session["user_agent"]) == ("127.0.0.1", USER_AGENT)
    assert _sid(carol) not in {s["id"] for s in shown}


def test_a_session_waiting_for_mfa_is_listed_in_its_state(api):
    bob = api.login(user="bob")
    assert api.add_key(bob).status == 201
    waiting = api.login(user="bob")
    assert waiting.state == "mfa_required"
    shown = {s["id"]: s for s in api.call("GET", "/me/sessions", token=bob.token).body["sessions"]}
    assert shown[_sid(waiting)]["state"] == "mfa_required"
    assert api.call("GET", "/me/sessions", token=waiting.token).code == "MfaRequired"


def _listed(api, member) -> list[str]:
    reply = api.call("GET", "/me/sessions", token=member.token)
    assert reply.status == 200, reply.body
    return [s["id"] for s in reply.body["sessions"]]


def test_sessions_a_first_key_ended_are_not_listed_but_stay_stored_for_the_ttl(api):
    stolen = api.login(user="bob")
    bob = api.login(user="bob")
    assert _listed(api, bob) == [_sid(bob), _sid(stolen)]

    assert api.add_key(bob).status == 201

    assert api.call("GET", "/me", token=stolen.token).code == "SessionEndedByNewKey"
    assert _listed(api, bob) == [_sid(bob)]
    assert Session.get(_sid(stolen), consistent_read=True).user_id == "bob"


def test_an_idle_session_is_not_listed(api):
    idle = api.login(user="bob")
    bob = api.login(user="bob")
    Session(_sid(idle)).update(actions=[Session.last_seen_at.set(clock.now() - timedelta(hours=1))])

    assert _listed(api, bob) == [_sid(bob)]
    assert api.call("GET", "/me", token=idle.token).code == "SessionIdle"


def test_sessions_the_organizations_enforcement_ended_are_not_listed(api):
    key = SoftwareAuthenticator()
    alice = api.login(user="alice", admin=True)
    assert api.add_key(alice, key).status == 201
    other = api.mfa_login(org="acme", user="alice", authenticator=key, admin=True)
    assert _listed(api, alice) == [_sid(other), _sid(alice)]

    assert (
        api.call(
            "PUT", "/org/mfa", token=alice.token, body={"enforced": True, "without_backup_credentials": True}
        ).status
        == 200
    )

    assert api.call("GET", "/me", token=other.token).code == "SessionEndedByEnforcement"
    assert _listed(api, alice) == [_sid(alice)]


# --- DELETE /me/sessions/{id} ---------------------------------------------------------------------


def test_a_member_ends_another_of_their_sessions(api):
    laptop, phone = api.login(user="bob"), api.login(user="bob")
    assert api.call("DELETE", f"/me/sessions/{_sid(phone)}", token=laptop.token).status == 204
    assert api.call("GET", "/me", token=phone.token).code == "InvalidToken"
    assert _works(api, laptop)
    [ended] = _logged("session.ended")
    assert (ended.actor, ended.target, ended.user_id) == ("bob", _sid(phone), "bob")
    again = api.call("DELETE", f"/me/sessions/{_sid(phone)}", token=laptop.token)
    assert (again.status, again.code) == (404, "SessionNotFound")


def test_someone_elses_session_is_not_found_and_keeps_working(api):
    bob = api.login(user="bob")
    carol = api.login(user="carol")
    globex_bob = api.login(org="globex", user="bob")
    for other in (carol, globex_bob):
        reply = api.call("DELETE", f"/me/sessions/{_sid(other)}", token=bob.token)
        assert (reply.status, reply.code) == (404, "SessionNotFound")
        assert _works(api, other)
    assert api.call("DELETE", "/me/sessions/no-such-session", token=bob.token).code == "SessionNotFound"
    assert _logged("session.ended") == []


def test_a_member_may_end_the_current_session(api):
    bob, other = api.login(user="bob"), api.login(user="bob")
    assert api.call("DELETE", f"/me/sessions/{_sid(bob)}", token=bob.token).status == 204
    assert not _works(api, bob)
    assert _works(api, other)


# --- DELETE /me/sessions ---------------------------------------------------------------------------


def test_a_member_signs_out_every_other_session_and_keeps_the_current_one(api):
    laptop, phone, tablet = (api.login(user="bob") for _ in range(3))
    carol = api.login(user="carol")

    assert api.call("DELETE", "/me/sessions", token=laptop.token).status == 204

    assert _works(api, laptop) and _works(api, carol)
    assert api.call("GET", "/me", token=phone.token).code == "InvalidToken"
    assert api.call("GET", "/me", token=tablet.token).code == "InvalidToken"
    assert _listed(api, laptop) == [_sid(laptop)]
    [ended] = _logged("member.sessions_ended")
    assert (ended.actor, ended.target, ended.user_id, ended.details.as_dict()) == (
        "bob",
        "bob",
        "bob",
        {"sessions_ended": 2},
    )


def test_signing_out_other_sessions_with_none_is_still_recorded(api):
    bob = api.login(user="bob")
    assert api.call("DELETE", "/me/sessions", token=bob.token).status == 204
    assert _works(api, bob)
    [ended] = _logged("member.sessions_ended")
    assert ended.details.as_dict() == {"sessions_ended": 0}


def test_a_session_waiting_for_its_key_cannot_sign_out_the_others(api):
    bob = api.login(user="bob")
    assert api.add_key(bob).status == 201
    waiting = api.login(user="bob")
    assert api.call("DELETE", "/me/sessions", token=waiting.token).code == "MfaRequired"
    assert _works(api, bob)


# --- DELETE /org/members/{user_id}/sessions -------------------------------------------------------


def test_an_admin_ends_every_session_of_a_member(api):
    alice = api.login(user="alice", admin=True)
    bobs = [api.login(user="bob") for _ in range(3)]
    carol = api.login(user="carol")

    assert api.call("DELETE", "/org/members/bob/sessions", token=alice.token).status == 204
    assert not any(_works(api, bob) for bob in bobs)
    assert _works(api, carol) and _works(api, alice)
    [ended] = _logged("member.sessions_ended")
    assert (ended.actor, ended.target, ended.details.as_dict()) == ("alice", "bob", {"sessions_ended": 3})


def test_an_admin_ending_their_own_sessions_keeps_the_current_one(api):
    alice, alices_phone = api.login(user="alice", admin=True), api.login(user="alice", admin=True)
    assert api.call("DELETE", "/org/members/alice/sessions", token=alice.token).status == 204
    assert _works(api, alice) and not _works(api, alices_phone)


def test_ending_sessions_of_an_unknown_member_or_as_a_member_is_refused(api):
    alice = api.login(user="alice", admin=True)
    bob = api.login(user="bob")
    gina = api.login(org="globex", user="gina", admin=True)

    unknown = api.call("DELETE", "/org/members/nobody/sessions", token=alice.token)
    assert (unknown.status, unknown.code) == (404, "MemberNotFound")
    elsewhere = api.call("DELETE", "/org/members/bob/sessions", token=gina.token)
    assert (elsewhere.status, elsewhere.code) == (404, "MemberNotFound")
    member = api.call("DELETE", "/org/members/alice/sessions", token=bob.token)
    assert (member.status, member.code) == (403, "AdminRequired")
    assert _works(api, bob) and _works(api, alice)
    assert _logged("member.sessions_ended") == []


def test_an_admin_ends_the_sessions_opened_with_backup_credentials(api):
    alice = api.login(user="alice", admin=True)
    issued = api.call("POST", "/org/backup-credentials", token=alice.token).body
    login = api.call("POST", "/auth/backup-login", body={"key_id": issued["key_id"], "secret": issued["secret"]})
    assert login.status == 200, login.body
    assert api.call("DELETE", f"/org/members/backup:{issued['key_id']}/sessions", token=alice.token).status == 204
    assert api.call("GET", "/me", token=login.body["token"]).code == "InvalidToken"
    assert _works(api, alice)


def test_ending_sessions_of_unknown_backup_credentials_is_not_found_and_not_logged(api):
    alice = api.login(user="alice", admin=True)
    gina = api.login(org="globex", user="gina", admin=True)
    globex_backup = api.call("POST", "/org/backup-credentials", token=gina.token).body["key_id"]
    for user_id in ("backup:bk_AAAAAAAAAAAAAAAAAAAAAA", f"backup:{globex_backup}"):
        reply = api.call("DELETE", f"/org/members/{user_id}/sessions", token=alice.token)
        assert (reply.status, reply.code) == (404, "MemberNotFound")
    for session_id in ("x" * 2000, "not-a-session-id"):
        reply = api.call("DELETE", f"/me/sessions/{session_id}", token=alice.token)
        assert (reply.status, reply.code) == (404, "SessionNotFound")
    reply = api.call("DELETE", f"/org/members/{'m' * 2000}/sessions", token=alice.token)
    assert (reply.status, reply.code) == (404, "MemberNotFound")
    assert _logged("member.sessions_ended") == []


# --- key deletions end the sessions verified with the key -----------------------------------------


@pytest.fixture
def bob(api):
    """bob with keys A and B: S0 (where he registered them: its proof is B, the last it registered),
    S1 with A, S2 with B, S3 with A."""
    s0 = api.login(user="bob")
    a, b = SoftwareAuthenticator(), SoftwareAuthenticator()
    key_ids = {}
    for name, authenticator in (("A", a), ("B", b)):
        reply = api.add_key(s0, authenticator, name=name)
        assert reply.status == 201, reply.body
        key_ids[name] = reply.body["key"]["id"]
    s1, s2, s3 = (api.mfa_login(org="acme", user="bob", authenticator=k) for k in (a, b, a))
    for session, key in ((s0, "B"), (s1, "A"), (s2, "B"), (s3, "A")):
        assert Session.get(_sid(session), consistent_read=True).verified_key_id == key_ids[key]
    return {"S0": s0, "S1": s1, "S2": s2, "S3": s3, **key_ids}


def test_deleting_a_key_ends_the_members_other_sessions_verified_with_it(api, bob):
    assert api.call("DELETE", f"/me/mfa/keys/{bob['A']}", token=bob["S3"].token).status == 204
    assert not _works(api, bob["S1"])
    assert all(_works(api, bob[s]) for s in ("S0", "S2", "S3"))


def test_an_admin_deleting_a_key_ends_every_session_verified_with_it(api, bob):
    alice = api.login(user="alice", admin=True)
    assert api.call("DELETE", f"/org/members/bob/mfa/keys/{bob['A']}", token=alice.token).status == 204
    assert not _works(api, bob["S1"]) and not _works(api, bob["S3"])
    assert _works(api, bob["S0"]) and _works(api, bob["S2"]) and _works(api, alice)


def test_disabling_mfa_ends_the_other_sessions_verified_with_any_key(api, bob):
    s4 = api.mfa_login(org="acme", user="bob", authenticator=bob["S2"].authenticators[0])
    assert api.call("DELETE", "/me/mfa", token=bob["S2"].token).status == 204
    assert not any(_works(api, s) for s in (bob["S0"], bob["S1"], bob["S3"], s4))
    assert _works(api, bob["S2"])


# --- last_seen_at ---------------------------------------------------------------------------------


def _last_seen(member):
    return Session.get(_sid(member), consistent_read=True).last_seen_at


def _set_last_seen(member, moment) -> None:
    Session(_sid(member)).update(actions=[Session.last_seen_at.set(moment)])


def test_last_seen_is_set_at_login_and_refreshed_only_every_five_minutes(api):
    before = clock.now()
    bob = api.login(user="bob")
    stored = Session.get(_sid(bob), consistent_read=True)
    assert stored.last_seen_at == stored.created_at and stored.last_seen_at >= before

    assert _works(api, bob)
    assert _last_seen(bob) == stored.last_seen_at  # an immediate second request writes nothing

    four_minutes_ago = clock.now() - timedelta(minutes=4)
    _set_last_seen(bob, four_minutes_ago)
    assert _works(api, bob)
    assert _last_seen(bob) == four_minutes_ago

    _set_last_seen(bob, clock.now() - timedelta(minutes=6))
    refreshed_after = clock.now()
    assert _works(api, bob)
    assert _last_seen(bob) >= refreshed_after
    shown = api.call("GET", "/me/sessions", token=bob.token).body["sessions"][0]
    assert shown["last_seen_at"] == clock.iso(_last_seen(bob))


def test_ending_more_sessions_than_one_transaction_holds_ends_them_all(api):
    from datetime import timedelta

    from chalicelib.access import sessions
    from chalicelib.base import clock

    now = clock.now()
    with Session.batch_write() as batch:
        for i in range(150):
            batch.save(
                Session.of_member(
                    f"s{i:04d}",
                    org_id="acme",
                    token_hash="x",
                    state="active",
                    user_id="bob",
                    created_at=now,
                    expires_at=now + timedelta(hours=1),
                    ttl=now + timedelta(days=1),
                )
            )

    assert sessions.end_sessions(sessions.sessions_of(org_id="acme", user_id="bob")) == 150
    assert sessions.sessions_of(org_id="acme", user_id="bob") == []
