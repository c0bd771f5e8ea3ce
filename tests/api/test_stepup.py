"""Step-up, idle timeout and the enrolment rules, both sides of every time boundary, with a
controlled clock (``chalicelib.base.clock.now``) through Chalice's test client."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from chalicelib.access import sessions
from chalicelib.base import clock, errors
from chalicelib.base.config import load
from chalicelib.base.models import Challenge, SecurityKey, Session
from chalicelib.keys import registration
from tests.support.audit_log import logged_events
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.keyward_client import KeywardClient, Member, enforce_in_table

WINDOW = timedelta(seconds=900)
IDLE = timedelta(seconds=3600)


class Clock:
    """keyward's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = clock.now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


@pytest.fixture
def time(monkeypatch: pytest.MonkeyPatch) -> Clock:
    controlled = Clock()
    monkeypatch.setattr(clock, "now", controlled)
    return controlled


def _session(member: Member) -> Session:
    return Session.get(member.token.split(".")[3], consistent_read=True)


def _step_up(api: KeywardClient, member: Member, authenticator: SoftwareAuthenticator) -> int:
    options = api.call("POST", "/auth/reauth/options", token=member.token)
    assert options.status == 200, options.body
    reply = api.call(
        "POST",
        "/auth/reauth/verify",
        token=member.token,
        body={
            "challenge_id": options.body["challenge_id"],
            "credential": authenticator.authenticate(options.body["publicKey"]),
        },
    )
    return reply.status


def _adds_key_options(api: KeywardClient, member: Member) -> tuple[int, str | None]:
    reply = api.call("POST", "/me/mfa/keys/options", token=member.token)
    return reply.status, reply.code


def test_the_settings_and_their_defaults():
    assert (load({}).reauth_window_seconds, load({}).session_idle_seconds) == (900, 3600)
    changed = load({"KEYWARD_REAUTH_WINDOW_SECONDS": "60", "KEYWARD_SESSION_IDLE_SECONDS": "600"})
    assert (changed.reauth_window_seconds, changed.session_idle_seconds) == (60, 600)
    with pytest.raises(errors.ConfigurationError):
        load({"KEYWARD_REAUTH_WINDOW_SECONDS": "0"})


def test_a_key_holder_acts_within_the_window_after_their_mfa_login(api, time):
    bob_key = SoftwareAuthenticator()
    api.add_key(api.login(), bob_key)
    bob = api.mfa_login(org="acme", user="bob", authenticator=bob_key)

    time.advance(WINDOW - timedelta(seconds=1))
    assert _adds_key_options(api, bob) == (200, None)
    time.advance(timedelta(seconds=1))
    assert _adds_key_options(api, bob) == (403, "ReauthenticationRequired")
    assert api.call("DELETE", "/me/mfa", token=bob.token).code == "ReauthenticationRequired"
    assert len(list(SecurityKey.scan(consistent_read=True))) == 1
    # Reading and renaming never need a step-up.
    [key] = api.call("GET", "/me/mfa/keys", token=bob.token).body["keys"]
    assert api.call("PATCH", f"/me/mfa/keys/{key['id']}", token=bob.token, body={"name": "Blue"}).status == 200


def test_stepping_up_opens_a_new_window(api, time):
    bob_key = SoftwareAuthenticator()
    api.add_key(api.login(), bob_key)
    bob = api.mfa_login(org="acme", user="bob", authenticator=bob_key)
    time.advance(WINDOW * 3)
    assert _adds_key_options(api, bob)[1] == "ReauthenticationRequired"

    assert _step_up(api, bob, bob_key) == 200
    assert _session(bob).key_checked_at == time.now

    time.advance(WINDOW - timedelta(seconds=1))
    assert _adds_key_options(api, bob) == (200, None)
    time.advance(timedelta(seconds=1))
    assert _adds_key_options(api, bob)[1] == "ReauthenticationRequired"


def test_registering_a_key_is_a_key_check(api, time):
    bob = api.login()
    time.advance(WINDOW - timedelta(seconds=10))
    api.add_key(bob)  # within the keyless member's window after login
    time.advance(WINDOW - timedelta(seconds=1))
    assert _adds_key_options(api, bob) == (200, None)  # counted from the registration, not the login
    time.advance(timedelta(seconds=1))
    assert _adds_key_options(api, bob)[1] == "ReauthenticationRequired"


def test_a_member_without_keys_acts_only_within_the_window_after_login(api, time):
    bob = api.login()
    time.advance(WINDOW - timedelta(seconds=1))
    assert _adds_key_options(api, bob) == (200, None)
    time.advance(timedelta(seconds=1))
    assert _adds_key_options(api, bob) == (403, "ReauthenticationRequired")
    step = api.call("POST", "/auth/reauth/options", token=bob.token)
    assert (step.status, step.code) == (409, "SecurityKeyRequired")
    assert _adds_key_options(api, api.login()) == (200, None)


def test_a_backup_session_acts_only_within_the_window_after_its_login(api, time):
    admin = api.login(user="alice", admin=True)
    created = api.call("POST", "/org/backup-credentials", token=admin.token).body
    signed_in = api.call(
        "POST", "/auth/backup-login", body={"key_id": created["key_id"], "secret": created["secret"]}
    ).body
    backup = Member(org="acme", user=f"backup:{created['key_id']}", token=signed_in["token"], state="active")

    def end_bobs_sessions() -> tuple[int, str | None]:
        reply = api.call("DELETE", "/org/members/alice/sessions", token=backup.token)
        return reply.status, reply.code

    time.advance(WINDOW - timedelta(seconds=1))
    assert end_bobs_sessions() == (204, None)
    time.advance(timedelta(seconds=1))
    assert end_bobs_sessions() == (403, "ReauthenticationRequired")
    step = api.call("POST", "/auth/reauth/options", token=backup.token)
    assert (step.status, step.code) == (403, "NotForBackupSessions")


@pytest.mark.parametrize(
    "action",
    [
        ("PUT", "/org/mfa", {"enforced": False}),
        ("POST", "/org/backup-credentials", None),
        ("DELETE", "/org/backup-credentials/bk_AAAAAAAAAAAAAAAAAAAAAA", None),
        ("DELETE", "/org/members/bob/sessions", None),
        ("DELETE", "/org/members/bob/mfa/keys/AAAAAAAAAAAAAAAAAAAAAA", None),
    ],
)
def test_every_admin_change_needs_a_recent_key_check(api, time, action):
    method, path, body = action
    admin = api.login(user="alice", admin=True)
    api.login(user="bob")
    time.advance(WINDOW)
    reply = api.call(method, path, token=admin.token, body=body)
    assert (reply.status, reply.code) == (403, "ReauthenticationRequired")
    # Reading does not.
    assert api.call("GET", "/org/mfa", token=admin.token).status == 200
    assert api.call("GET", "/org/backup-credentials", token=admin.token).status == 200


def test_a_step_up_needs_an_active_session(api):
    bob_key = SoftwareAuthenticator()
    api.add_key(api.login(), bob_key)
    pending = api.login()
    reply = api.call("POST", "/auth/reauth/options", token=pending.token)
    assert (reply.status, reply.code) == (403, "MfaRequired")


def test_an_mfa_challenge_of_the_same_session_cannot_serve_a_step_up(api):
    from chalicelib.ceremony import challenges
    from chalicelib.ceremony.challenges import Ceremony

    bob_key = SoftwareAuthenticator()
    api.add_key(api.login(), bob_key)
    bob = api.mfa_login(org="acme", user="bob", authenticator=bob_key)
    issued = challenges.issue(ceremony=Ceremony.AUTHENTICATION, session=_session(bob))
    options = api.call("POST", "/auth/reauth/options", token=bob.token).body
    forged = bob_key.authenticate({**options["publicKey"], "challenge": _b64(issued.challenge)})

    reply = api.call(
        "POST", "/auth/reauth/verify", token=bob.token, body={"challenge_id": issued.challenge_id, "credential": forged}
    )

    assert (reply.status, reply.code) == (401, "ChallengeMismatch")
    assert Challenge.get(issued.challenge_id, consistent_read=True) is not None


def _b64(raw: bytes) -> str:
    from tests.support.authenticator import b64url

    return b64url(raw)


# --- idle timeout --------------------------------------------------------------------------------


def test_a_session_unused_for_the_idle_timeout_ends(api, time):
    bob = api.login()
    time.advance(IDLE - timedelta(seconds=1))
    assert api.call("GET", "/me", token=bob.token).status == 200  # used: counts from now on
    time.advance(IDLE - timedelta(seconds=1))
    assert api.call("GET", "/me", token=bob.token).status == 200
    time.advance(IDLE)
    reply = api.call("GET", "/me", token=bob.token)
    assert (reply.status, reply.code) == (401, "SessionIdle")


def test_use_within_the_refresh_resolution_keeps_a_short_idle_timeout_from_ending_a_session_in_use(
    api, time, monkeypatch
):
    from chalicelib.base import config

    short = load({"KEYWARD_SESSION_IDLE_SECONDS": "120"})
    monkeypatch.setattr(sessions, "settings", lambda: short)
    bob = api.login()
    for _ in range(10):
        time.advance(timedelta(seconds=100))
        assert api.call("GET", "/me", token=bob.token).status == 200
    time.advance(timedelta(seconds=120))
    assert api.call("GET", "/me", token=bob.token).code == "SessionIdle"
    assert config.settings().session_idle_seconds == 3600


# --- enrolment -----------------------------------------------------------------------------------


def test_a_waiting_session_resolved_before_the_member_enrolled_cannot_register(api):
    api.login(user="alice", admin=True)
    enforce_in_table("acme")
    stale, bob = api.login(), api.login()
    assert stale.state == bob.state == "registration_required"
    options = api.registration_options(stale).body
    credential = SoftwareAuthenticator().register(options["publicKey"])
    # The stale request passed resolve while the member had no key; then bob registered.
    submission = registration.parse_submission(challenge_id=options["challenge_id"], name="Late", credential=credential)
    stale_caller = sessions.resolve(
        authorization=f"Bearer {stale.token}", also=registration.submission_reads(submission)
    )
    assert api.add_key(bob).status == 201

    with pytest.raises(errors.AlreadyEnrolled):
        registration.register(caller=stale_caller, submission=submission)

    assert [key.user_id for key in SecurityKey.scan(consistent_read=True)] == ["bob"]
    assert _session(stale).state == "registration_required"
    failed = [e for e in logged_events("acme") if e.action == "key.registration_failed"]
    assert [e.details.as_dict() for e in failed] == [{"reason": "AlreadyEnrolled"}]


def test_a_first_key_moves_the_member_and_the_registering_session_to_a_new_generation(api):
    from chalicelib.base.models import Member as StoredMember

    bob, other = api.login(), api.login()
    assert api.add_key(bob).status == 201
    assert StoredMember.get("acme", "bob").session_generation == 1
    assert _session(bob).member_generation == 1
    assert _session(other).member_generation == 0
    assert api.call("GET", "/me", token=other.token).code == "SessionEndedByNewKey"
    assert api.add_key(bob).status == 201  # a second key starts no new generation
    assert StoredMember.get("acme", "bob").session_generation == 1


def test_refused_registration_ceremonies_are_audited(api):
    bob = api.login()
    options = api.registration_options(bob).body
    forged = SoftwareAuthenticator().register(options["publicKey"], origin="https://evil.example")
    reply = api.call(
        "POST",
        "/me/mfa/keys",
        token=bob.token,
        body={"challenge_id": options["challenge_id"], "name": "Evil", "credential": forged},
    )
    assert reply.code == "OriginMismatch"
    failed = [e for e in logged_events("acme") if e.action == "key.registration_failed"]
    assert [(e.user_id, e.details.as_dict()) for e in failed] == [("bob", {"reason": "OriginMismatch"})]


def test_logout_is_audited_and_a_stale_logout_is_refused(api):
    bob = api.login()
    caller = sessions.resolve(authorization=f"Bearer {bob.token}")
    assert api.call("POST", "/auth/logout", token=bob.token).status == 204
    with pytest.raises(errors.InvalidToken):
        sessions.end(caller=caller)
    assert [e.action for e in logged_events("acme") if e.action == "logout"] == ["logout"]
