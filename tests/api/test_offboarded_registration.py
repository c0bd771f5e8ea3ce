"""A member offboarded while their key registration is under way: the registration is refused
because their membership is gone, and stores nothing."""

from __future__ import annotations

import pytest

from chalicelib.access import sessions
from chalicelib.base.errors import InvalidToken
from chalicelib.base.models import CredentialClaim, Member, Organization, SecurityKey
from chalicelib.keys import registration
from tests.support.authenticator import SoftwareAuthenticator


def _admin(api):
    first = api.login(user="alice", admin=True)
    assert api.add_key(first, SoftwareAuthenticator()).status == 201
    return api.mfa_login(org="acme", user="alice", authenticator=first.authenticators[0], admin=True)


@pytest.mark.parametrize("keys_held", [0, 1])
def test_a_registration_of_a_member_offboarded_meanwhile_is_refused_as_a_session_gone(api, keys_held):
    alice = _admin(api)
    bob = api.login(user="bob")
    if keys_held:
        # His registration opens the step-up window another registration needs.
        assert api.add_key(bob, SoftwareAuthenticator()).status == 201
    options = api.registration_options(bob).body
    submission = registration.parse_submission(
        challenge_id=options["challenge_id"],
        name="Late",
        credential=SoftwareAuthenticator().register(options["publicKey"]),
    )
    # bob's request has read his session and member item...
    caller = sessions.resolve(authorization=f"Bearer {bob.token}", also=registration.submission_reads(submission))
    # ... when an admin offboards him.
    assert api.call("DELETE", "/org/members/bob", token=alice.token).status == 204
    before = Organization.get("acme", consistent_read=True).attribute_values

    with pytest.raises(InvalidToken):
        registration.register(caller=caller, submission=submission)
    assert [key.user_id for key in SecurityKey.query("acme", consistent_read=True)] == ["alice"]
    assert [claim.user_id for claim in CredentialClaim.scan()] == ["alice"]
    assert api.call("GET", "/me", token=bob.token).code == "InvalidToken"
    assert Organization.get("acme", consistent_read=True).attribute_values == before
    with pytest.raises(Member.DoesNotExist):
        Member.get("acme", "bob", consistent_read=True)
