"""The MFA check's guards, each made to matter: the key and the user handle must be the
member's own (tested with fixed IDs on both sides, so ``!=`` weakened to ``<`` or ``>`` fails),
and the race guards of the final transaction — the key's signature counter and the session's
token and state unchanged since they were read — tested against a stale caller: the table is
changed between the read and the write, as a concurrent request would change it."""

from __future__ import annotations

import pytest

from chalicelib.access import mfa, sessions
from chalicelib.base.errors import (
    BackupEligibilityChanged,
    InvalidToken,
    SignCountRegression,
    UnknownCredential,
)
from chalicelib.base.models import SecurityKey, Session
from chalicelib.ceremony.credentials import user_handle_for
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.key_use import set_sign_count, stored_key
from tests.support.meanwhile import after_verification

ORG = "acme"


def _member_with_key(api, user: str):
    member = api.login(org=ORG, user=user)
    authenticator = SoftwareAuthenticator()
    assert api.add_key(member, authenticator).status == 201
    return authenticator


def _pending(api, user: str):
    """A fresh ``mfa_required`` login: its caller as resolved now, and its request options."""
    member = api.login(org=ORG, user=user)
    assert member.state == "mfa_required"
    caller = sessions.resolve(authorization=f"Bearer {member.token}")
    options = api.mfa_options(member)
    assert options.status == 200
    return member, caller, options.body


def _state(member) -> str:
    [session] = [s for s in Session.scan() if s.session_id == member.token.split(".")[3]]
    return session.state


# --- whose key, whose user handle: both sides of each comparison ---------------------------------


@pytest.mark.parametrize("intruder", ["user-a", "user-z"])  # below and above the key's owner, user-m
def test_a_key_of_another_member_is_refused_whatever_the_order_of_their_ids(api, intruder):
    owners_key = _member_with_key(api, "user-m")
    _member_with_key(api, intruder)
    member, caller, options = _pending(api, intruder)
    # The intruder's browser ignores allowCredentials and offers the owner's key.
    assertion = owners_key.authenticate({**options["publicKey"], "allowCredentials": []})

    with pytest.raises(UnknownCredential):
        mfa.verify(
            caller=caller, assertion=mfa.parse_assertion(challenge_id=options["challenge_id"], credential=assertion)
        )
    assert _state(member) == "mfa_required"


@pytest.mark.parametrize("handle_of", ["user-a", "user-z", "below", "above"])
def test_a_user_handle_other_than_the_members_own_is_refused_on_either_side(api, handle_of):
    authenticator = _member_with_key(api, "user-m")
    member, caller, options = _pending(api, "user-m")
    own = user_handle_for(org_id=ORG, user_id="user-m")
    handle = {
        "below": (int.from_bytes(own, "big") - 1).to_bytes(32, "big"),
        "above": (int.from_bytes(own, "big") + 1).to_bytes(32, "big"),
    }.get(handle_of) or user_handle_for(org_id=ORG, user_id=handle_of)
    assertion = authenticator.authenticate(options["publicKey"], user_handle=handle)

    with pytest.raises(UnknownCredential):
        mfa.verify(
            caller=caller, assertion=mfa.parse_assertion(challenge_id=options["challenge_id"], credential=assertion)
        )
    assert _state(member) == "mfa_required"


def test_the_members_own_user_handle_passes(api):
    authenticator = _member_with_key(api, "user-m")
    member, caller, options = _pending(api, "user-m")
    assertion = authenticator.authenticate(
        options["publicKey"], user_handle=user_handle_for(org_id=ORG, user_id="user-m")
    )

    assert mfa.verify(
        caller=caller, assertion=mfa.parse_assertion(challenge_id=options["challenge_id"], credential=assertion)
    ).token
    assert _state(member) == "active"


# --- the race guards, against a stale caller -----------------------------------------------------


@pytest.mark.parametrize("counter_meanwhile", [0, 1_000])  # another use moved it; an edit set it back
@pytest.mark.parametrize("used_before", [True, False], ids=["used before", "first check"])
def test_a_key_whose_counter_changed_meanwhile_activates_nothing(api, monkeypatch, counter_meanwhile, used_before):
    authenticator = _member_with_key(api, "bob")
    [key] = list(SecurityKey.scan())
    if used_before:
        set_sign_count(key.key_id, 5)  # as after a few uses
    authenticator.sign_count = 10
    member, caller, options = _pending(api, "bob")
    assertion = authenticator.authenticate(options["publicKey"])
    after_verification(monkeypatch, lambda: set_sign_count(key.key_id, counter_meanwhile))

    with pytest.raises(SignCountRegression):
        mfa.verify(
            caller=caller, assertion=mfa.parse_assertion(challenge_id=options["challenge_id"], credential=assertion)
        )

    assert _state(member) == "mfa_required"
    assert stored_key(ORG, key.key_id).sign_count == counter_meanwhile


@pytest.mark.parametrize("token_hash_meanwhile", ["0" * 64, "f" * 64])  # below and above any real hash
def test_a_session_whose_token_changed_meanwhile_is_not_activated(api, monkeypatch, token_hash_meanwhile):
    authenticator = _member_with_key(api, "bob")
    member, caller, options = _pending(api, "bob")
    [key] = list(SecurityKey.scan())
    assertion = authenticator.authenticate(options["publicKey"])
    session = Session(caller.session.session_id)
    after_verification(monkeypatch, lambda: session.update(actions=[Session.token_hash.set(token_hash_meanwhile)]))

    with pytest.raises(InvalidToken):
        mfa.verify(
            caller=caller, assertion=mfa.parse_assertion(challenge_id=options["challenge_id"], credential=assertion)
        )

    stored = Session.get(caller.session.session_id, consistent_read=True)
    assert (stored.state, stored.token_hash) == ("mfa_required", token_hash_meanwhile)
    # One transaction: the key's counter did not move either.
    assert stored_key(ORG, key.key_id).sign_count == key.sign_count


def test_a_session_activated_meanwhile_is_not_activated_again(api, monkeypatch):
    # Same token, but the session left mfa_required meanwhile (another verify with the same token).
    authenticator = _member_with_key(api, "bob")
    member, caller, options = _pending(api, "bob")
    assertion = authenticator.authenticate(options["publicKey"])
    session = Session(caller.session.session_id)
    after_verification(monkeypatch, lambda: session.update(actions=[Session.state.set("active")]))

    with pytest.raises(InvalidToken):
        mfa.verify(
            caller=caller, assertion=mfa.parse_assertion(challenge_id=options["challenge_id"], credential=assertion)
        )

    stored = Session.get(caller.session.session_id, consistent_read=True)
    assert stored.token_hash == caller.token_hash and stored.verified_key_id is None


# --- the key found must be the credential presented, and as it was registered -------------------


@pytest.mark.parametrize("stored_id", [b"\x00" * 16, b"\xff" * 16])  # below and above any presented ID
def test_a_stored_key_whose_credential_id_differs_from_the_presented_one_is_refused(api, stored_id):
    """The key item is found by a hash of the credential ID; one whose stored ID is another (an
    operator's edit, a collision) must not verify, whichever way the two IDs sort."""
    authenticator = _member_with_key(api, "bob")
    [key] = list(SecurityKey.scan())
    key.update(actions=[SecurityKey.credential_id.set(stored_id)])
    member, caller, options = _pending(api, "bob")

    with pytest.raises(UnknownCredential):
        mfa.verify(
            caller=caller,
            assertion=mfa.parse_assertion(
                challenge_id=options["challenge_id"], credential=authenticator.authenticate(options["publicKey"])
            ),
        )
    assert _state(member) == "mfa_required"


def test_a_credential_unknown_to_the_organization_is_refused(api):
    _member_with_key(api, "bob")
    member, caller, options = _pending(api, "bob")
    stranger = SoftwareAuthenticator()
    stranger.register({**api.registration_options(api.login(org="other", user="olga")).body["publicKey"]})

    with pytest.raises(UnknownCredential):
        mfa.verify(
            caller=caller,
            assertion=mfa.parse_assertion(
                challenge_id=options["challenge_id"],
                credential=stranger.authenticate({**options["publicKey"], "allowCredentials": []}),
            ),
        )
    assert _state(member) == "mfa_required"


@pytest.mark.parametrize(("registered", "presented"), [(False, True), (True, False)])
def test_a_key_whose_backup_eligibility_changed_since_registration_is_refused_either_way(api, registered, presented):
    member = api.login(org=ORG, user="bob")
    authenticator = SoftwareAuthenticator(backup_eligible=registered)
    assert api.add_key(member, authenticator).status == 201
    pending, caller, options = _pending(api, "bob")
    authenticator.backup_eligible = presented

    with pytest.raises(BackupEligibilityChanged):
        mfa.verify(
            caller=caller,
            assertion=mfa.parse_assertion(
                challenge_id=options["challenge_id"], credential=authenticator.authenticate(options["publicKey"])
            ),
        )
    assert _state(pending) == "mfa_required"


def test_a_session_moved_to_registration_meanwhile_is_not_activated(api, monkeypatch):
    # registration_required sorts after mfa_required: a state condition weakened to >= would let it through.
    authenticator = _member_with_key(api, "bob")
    member, caller, options = _pending(api, "bob")
    assertion = authenticator.authenticate(options["publicKey"])
    after_verification(
        monkeypatch,
        lambda: Session(caller.session.session_id).update(actions=[Session.state.set("registration_required")]),
    )

    with pytest.raises(InvalidToken):
        mfa.verify(
            caller=caller, assertion=mfa.parse_assertion(challenge_id=options["challenge_id"], credential=assertion)
        )
    assert _state(member) == "registration_required"


# --- where a passed check leads: the policy matters only under enforcement ------------------------


def _admin_with_key(api):
    first = api.login(org=ORG, user="alice", admin=True)
    assert api.add_key(first, SoftwareAuthenticator()).status == 201
    return api.mfa_login(org=ORG, user="alice", authenticator=first.authenticators[0], admin=True)


def test_under_enforcement_a_compliant_key_activates_the_session(api):
    admin = _admin_with_key(api)
    assert (
        api.call(
            "PUT", "/org/mfa", token=admin.token, body={"enforced": True, "without_backup_credentials": True}
        ).status
        == 200
    )
    authenticator = _member_with_key_under_enforcement(api, admin, "bob")

    bob = api.mfa_login(org=ORG, user="bob", authenticator=authenticator)

    assert bob.state == "active"


def test_without_enforcement_a_key_the_policy_refuses_still_activates_the_session(api):
    admin = _admin_with_key(api)
    authenticator = _member_with_key(api, "bob")
    policy = api.call("PUT", "/org/mfa/policy", token=admin.token, body={"attestation": "required"})
    assert policy.status == 200, policy.body

    bob = api.mfa_login(org=ORG, user="bob", authenticator=authenticator)

    assert bob.state == "active"


def _member_with_key_under_enforcement(api, admin, user: str) -> SoftwareAuthenticator:
    member = api.login(org=ORG, user=user)
    assert member.state == "registration_required"
    authenticator = SoftwareAuthenticator()
    assert api.add_key(member, authenticator).status == 201
    return authenticator
