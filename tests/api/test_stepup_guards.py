"""The step-up rule's guards, each made to matter: a key holder's window counts only from a key
check, never from the login; the refusal tells a member with keys to step up and one without to
sign in again; and the race guards of the step-up's transaction — the session's token and state
and the key's counter unchanged since they were read, the challenge not used meanwhile — tested
against a stale request: the table is changed between the read and the write; and a step-up
opens the window only with a key the organization accepts (under enforcement, one its policy
accepts), its proof counting under the policy's version only for such a key."""

from __future__ import annotations

from datetime import timedelta

import pytest

from chalicelib.base import clock
from chalicelib.base.models import Challenge, Organization, SecurityKey, Session
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.key_use import set_sign_count, stored_keys
from tests.support.key_use import stored_key as key_in_use
from tests.support.keyward_client import KeywardClient, Member
from tests.support.meanwhile import after_verification

ORG = "acme"
WINDOW = timedelta(seconds=900)


def _key_holder(api: KeywardClient, user: str = "bob") -> tuple[Member, SoftwareAuthenticator]:
    signed_in = api.login(org=ORG, user=user)
    key = SoftwareAuthenticator()
    assert api.add_key(signed_in, key).status == 201
    return api.mfa_login(org=ORG, user=user, authenticator=key), key


def _session(member: Member) -> Session:
    return Session.get(member.token.split(".")[3], consistent_read=True)


def _step_up(api: KeywardClient, member: Member, key: SoftwareAuthenticator):
    options = api.call("POST", "/auth/reauth/options", token=member.token)
    assert options.status == 200, options.body
    return api.call(
        "POST",
        "/auth/reauth/verify",
        token=member.token,
        body={
            "challenge_id": options.body["challenge_id"],
            "credential": key.authenticate(options.body["publicKey"]),
        },
    )


# --- whose window counts from the login -----------------------------------------------------------


def test_a_key_holders_fresh_session_without_a_key_check_must_step_up(api):
    """A session of a member with keys that never passed a key check (one from before keyward
    recorded checks) may not act on the strength of its login alone, however recent."""
    bob, _ = _key_holder(api)
    Session(bob.token.split(".")[3]).update(actions=[Session.key_checked_at.remove()])

    reply = api.call("POST", "/me/mfa/keys/options", token=bob.token)

    assert (reply.status, reply.code) == (403, "ReauthenticationRequired")


def test_the_refusal_tells_a_key_holder_to_step_up_and_a_member_without_keys_to_sign_in_again(api, monkeypatch):
    bob, _ = _key_holder(api)
    carol = api.login(org=ORG, user="carol")
    later = clock.now() + WINDOW + timedelta(seconds=1)  # past the window, well within the idle timeout
    monkeypatch.setattr(clock, "now", lambda: later)

    holder = api.call("POST", "/me/mfa/keys/options", token=bob.token)
    keyless = api.call("POST", "/me/mfa/keys/options", token=carol.token)

    assert (holder.status, holder.code) == (403, "ReauthenticationRequired")
    assert "/auth/reauth/options" in holder.body["Message"] and "sign in again" not in holder.body["Message"]
    assert (keyless.status, keyless.code) == (403, "ReauthenticationRequired")
    assert "sign in again" in keyless.body["Message"] and "/auth/reauth/options" not in keyless.body["Message"]


# --- the step-up's transaction against a stale request --------------------------------------------


@pytest.mark.parametrize("token_hash_meanwhile", ["0" * 64, "f" * 64])  # below and above any real hash
def test_a_session_whose_token_changed_meanwhile_is_not_stepped_up(api, monkeypatch, token_hash_meanwhile):
    bob, key = _key_holder(api)
    checked_before = _session(bob).key_checked_at
    [stored_key] = stored_keys()
    after_verification(
        monkeypatch,
        lambda: Session(bob.token.split(".")[3]).update(actions=[Session.token_hash.set(token_hash_meanwhile)]),
    )

    reply = _step_up(api, bob, key)

    assert (reply.status, reply.code) == (401, "InvalidToken")
    after = _session(bob)
    assert (after.token_hash, after.key_checked_at) == (token_hash_meanwhile, checked_before)
    # One transaction: the key's counter did not move either.
    assert key_in_use(ORG, stored_key.key_id).sign_count == stored_key.sign_count


@pytest.mark.parametrize("state_meanwhile", ["mfa_required", "registration_required"])
def test_a_session_that_left_active_meanwhile_is_not_stepped_up(api, monkeypatch, state_meanwhile):
    bob, key = _key_holder(api)
    checked_before = _session(bob).key_checked_at
    after_verification(
        monkeypatch, lambda: Session(bob.token.split(".")[3]).update(actions=[Session.state.set(state_meanwhile)])
    )

    reply = _step_up(api, bob, key)

    assert (reply.status, reply.code) == (401, "InvalidToken")
    assert (_session(bob).state, _session(bob).key_checked_at) == (state_meanwhile, checked_before)


def test_a_challenge_used_meanwhile_steps_nothing_up(api, monkeypatch):
    bob, key = _key_holder(api)
    checked_before = _session(bob).key_checked_at
    after_verification(monkeypatch, lambda: [challenge.delete() for challenge in Challenge.scan()])

    reply = _step_up(api, bob, key)

    assert (reply.status, reply.code) == (401, "ChallengeNotFound")
    assert _session(bob).key_checked_at == checked_before


def test_a_key_used_meanwhile_steps_nothing_up(api, monkeypatch):
    bob, key = _key_holder(api)
    checked_before = _session(bob).key_checked_at
    [stored_key] = list(SecurityKey.scan())
    after_verification(monkeypatch, lambda: set_sign_count(stored_key.key_id, 1_000))

    reply = _step_up(api, bob, key)

    assert (reply.status, reply.code) == (401, "SignCountRegression")
    assert _session(bob).key_checked_at == checked_before
    assert key_in_use(ORG, stored_key.key_id).sign_count == 1_000


# --- a step-up proves a key only if the organization accepts it -----------------------------------

ZERO_AAGUID = "00000000-0000-0000-0000-000000000000"  # the test authenticators'


def _policy_in_table(*, enforced: bool, denied: list[str], version: int, session: Session) -> None:
    """The organization's policy and enforcement as stored, without ending the session."""
    Organization(ORG).update(
        actions=[
            Organization.mfa_enforced.set(enforced),
            Organization.compliance_version.set(version),
            Organization.authenticator_policy.set({"denied_aaguids": denied, "version": version}),
        ]
    )
    session.update(actions=[Session.org_enforced_at_start.set(True)])


@pytest.mark.parametrize(
    "enforced, denied, outcome",
    [
        (True, [ZERO_AAGUID], (403, "AuthenticatorNotAllowed")),
        (True, [], (200, None)),
        (False, [ZERO_AAGUID], (200, None)),
    ],
    ids=["enforced-refused-key", "enforced-accepted-key", "not-enforced-refused-key"],
)
def test_a_step_up_opens_the_window_only_with_a_key_the_organization_accepts(api, enforced, denied, outcome):
    bob, key = _key_holder(api)
    checked_before = _session(bob).key_checked_at
    _policy_in_table(enforced=enforced, denied=denied, version=3, session=_session(bob))

    reply = _step_up(api, bob, key)

    assert (reply.status, reply.code) == outcome, reply.body
    after = _session(bob)
    if reply.status == 200:
        # The proof counts under the policy's version only for a key the policy accepts.
        assert after.key_checked_at > checked_before
        assert after.verified_key_counts_under == (None if denied else 3)
    else:
        assert (after.key_checked_at, after.verified_key_counts_under) == (checked_before, 0)
