"""Sessions: who may call what in which state, expiry, logout and the enforcement rule."""

from __future__ import annotations

from datetime import timedelta

import pytest

from chalicelib.base import clock
from chalicelib.base.models import Organization, Session
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.keyward_client import enforce_in_table


def _only_session() -> Session:
    [session] = list(Session.scan(consistent_read=True))
    return session


def test_me_describes_the_caller(api):
    bob = api.login()
    reply = api.call("GET", "/me", token=bob.token)

    assert reply.status == 200
    assert reply.body["user"]["id"] == "bob"
    assert reply.body["org"] == {"id": "acme", "mfa_enforced": False}
    assert reply.body["session"]["state"] == "active"
    assert reply.body["mfa"] == {
        "enabled": False,
        "key_count": 0,
        "registration_due_at": None,
        "enrollment_code_required": False,
    }


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "MissingToken"),
        ("Basic abc", "MissingToken"),
        ("Bearer ", "MissingToken"),
        ("Bearer garbage", "InvalidToken"),
        ("Bearer kw1.!!.!!.x.y", "InvalidToken"),
        ("Bearer kw1.YWNtZQ.Ym9i.nosuchsession.secret", "InvalidToken"),
    ],
)
def test_requests_without_a_valid_token_are_refused(api, header, code):
    api.login()
    headers = {"authorization": header} if header is not None else {}
    reply = api.call("GET", "/me", headers=headers)
    assert (reply.status, reply.code) == (401, code)


@pytest.mark.parametrize(
    "part, value",
    [
        ("org", "o" * 129),
        ("org", "not an org id"),
        ("user", "u" * 256),
        ("session", "s" * 23),
        ("session", "s" * 2000),
        ("session", "s" * 21 + "!"),
    ],
)
def test_a_token_naming_what_keyward_never_issues_is_refused_before_any_read(api, monkeypatch, part, value):
    """Names longer than keyward issues would exceed DynamoDB's key sizes: the real service
    answers such a read with an error (a 503 here), so the token is refused before it."""
    import base64

    from chalicelib.access import sessions

    def no_read(*args, **kwargs):
        raise AssertionError("the session was read")

    monkeypatch.setattr(sessions, "TransactGet", no_read)

    def encoded(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    parts = {"org": encoded("acme"), "user": encoded("bob"), "session": "A" * 22}
    parts[part] = encoded(value) if part != "session" else value
    token = ".".join(("kw1", parts["org"], parts["user"], parts["session"], "secret"))

    for method, path in (("GET", "/me"), ("POST", "/auth/logout")):
        reply = api.call(method, path, token=token)
        assert (reply.status, reply.code) == (401, "InvalidToken"), (part, reply)


def test_a_token_with_a_wrong_secret_is_refused(api):
    bob = api.login()
    forged = bob.token[:-4] + ("AAAA" if not bob.token.endswith("AAAA") else "BBBB")
    assert api.call("GET", "/me", token=forged).code == "InvalidToken"
    assert api.call("GET", "/me", token=bob.token).status == 200


def test_a_token_naming_another_user_is_refused(api):
    bob = api.login(user="bob")
    api.login(user="carol")
    prefix, org, _user, session_id, secret = bob.token.split(".")
    carol_part = "Y2Fyb2w"  # base64url("carol")
    forged = ".".join((prefix, org, carol_part, session_id, secret))
    assert api.call("GET", "/me", token=forged).code == "InvalidToken"


def test_expiry_is_checked_on_every_request_not_left_to_ttl(api):
    bob = api.login()
    session = _only_session()
    session.update(actions=[Session.expires_at.set(clock.now() - timedelta(seconds=1))])

    reply = api.call("GET", "/me", token=bob.token)
    assert (reply.status, reply.code) == (401, "SessionExpired")


def test_the_session_lifetime_is_twelve_hours_by_default(api):
    api.login()
    session = _only_session()
    assert session.expires_at - session.created_at == timedelta(hours=12)
    assert session.ttl >= session.expires_at


def test_logout_ends_the_session(api):
    bob = api.login()
    assert api.call("POST", "/auth/logout", token=bob.token).status == 204
    assert list(Session.scan()) == []
    reply = api.call("GET", "/me", token=bob.token)
    assert (reply.status, reply.code) == (401, "InvalidToken")
    assert api.call("POST", "/auth/logout", token=bob.token).status == 401


def test_a_member_with_keys_logs_in_to_mfa_required_and_may_only_do_mfa(api):
    bob = api.login()
    assert api.add_key(bob).status == 201
    pending = api.login()
    assert pending.state == "mfa_required"

    assert api.call("GET", "/me", token=pending.token).body["session"]["state"] == "mfa_required"
    for method, path in [("GET", "/me/mfa/keys"), ("POST", "/me/mfa/keys/options"), ("DELETE", "/me/mfa")]:
        reply = api.call(method, path, token=pending.token)
        assert (reply.status, reply.code) == (403, "MfaRequired"), path
    assert api.mfa_options(pending).status == 200
    assert api.call("POST", "/auth/logout", token=pending.token).status == 204


def test_an_active_session_cannot_run_the_mfa_step_again(api):
    bob = api.login()
    reply = api.mfa_options(bob)
    assert (reply.status, reply.code) == (403, "WrongSessionState")


def test_registration_required_allows_registration_and_registering_activates(api):
    api.login()  # creates the organization
    enforce_in_table("acme")
    bob = api.login()
    assert bob.state == "registration_required"

    reply = api.call("GET", "/me/mfa/keys", token=bob.token)
    assert (reply.status, reply.code) == (403, "RegistrationRequired")
    assert api.call("GET", "/me", token=bob.token).status == 200

    registered = api.add_key(bob, SoftwareAuthenticator())
    assert registered.status == 201
    assert registered.body["session"]["state"] == "active"
    assert api.call("GET", "/me/mfa/keys", token=bob.token).status == 200


def test_sessions_from_before_an_enforcement_end_at_once_except_the_enforcing_one(api):
    admin = api.login(user="alice", admin=True)
    bob = api.login(user="bob")
    admin_session = next(s for s in Session.scan() if s.user_id == "alice")

    enforce_in_table("acme", enforcing_session_id=admin_session.session_id)

    reply = api.call("GET", "/me", token=bob.token)
    assert (reply.status, reply.code) == (401, "SessionEndedByEnforcement")
    assert api.call("GET", "/me", token=admin.token).status == 200
    # A login after the enforcement is not affected by it.
    assert api.call("GET", "/me", token=api.login(user="bob").token).status == 200


def test_sessions_ended_by_an_enforcement_stay_ended_when_it_is_relaxed(api):
    bob = api.login()
    enforce_in_table("acme")
    Organization("acme").update(actions=[Organization.mfa_enforced.set(False), Organization.enforced_at.remove()])
    assert api.call("GET", "/me", token=bob.token).code == "SessionEndedByEnforcement"


def test_an_enforcement_set_outside_the_api_ends_every_session_at_once(api):
    bob = api.login()
    Organization("acme").update(actions=[Organization.mfa_enforced.set(True)])  # an operator, in the console
    assert api.call("GET", "/me", token=bob.token).code == "SessionEndedByEnforcement"


def test_a_session_records_whether_its_organization_enforced_mfa_when_it_started(api):
    api.login(user="bob")
    enforce_in_table("acme")
    assert api.login(user="carol").state == "registration_required"
    started = {session.user_id: session.org_enforced_at_start for session in Session.scan(consistent_read=True)}
    assert started == {"bob": False, "carol": True}


def test_a_switch_on_that_no_enforcement_recorded_yet_ends_only_sessions_started_without_it(api):
    """An operator switched the flag off and on again after an API enforcement: the organization
    item looks as it did, but a session that started in between has ended."""
    api.login(user="alice", admin=True)
    enforce_in_table("acme")
    under_enforcement = api.login(user="carol")
    Organization("acme").update(actions=[Organization.mfa_enforced.set(False)])
    in_between = api.login(user="bob")
    assert in_between.state == "active"
    Organization("acme").update(actions=[Organization.mfa_enforced.set(True)])

    assert api.call("GET", "/me", token=in_between.token).code == "SessionEndedByEnforcement"
    assert api.call("GET", "/me", token=under_enforcement.token).status == 200  # until the stream function records it


def test_a_session_from_before_the_flag_was_recorded_keeps_the_earlier_rule(api):
    """Sessions stored before sessions recorded the flag at their start: the operator's
    enforcement that is not yet recorded ends them; an API enforcement's generation does the rest."""
    bob = api.login()
    Session(_only_session().session_id).update(actions=[Session.org_enforced_at_start.remove()])
    assert _only_session().org_enforced_at_start is None
    assert api.call("GET", "/me", token=bob.token).status == 200

    Organization("acme").update(actions=[Organization.mfa_enforced.set(True)])  # no enforced_at: not recorded
    assert api.call("GET", "/me", token=bob.token).code == "SessionEndedByEnforcement"
    Organization("acme").update(actions=[Organization.enforced_at.set(clock.now())])  # as if recorded, same generation
    assert api.call("GET", "/me", token=bob.token).status == 200
