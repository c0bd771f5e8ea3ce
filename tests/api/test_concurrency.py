"""Races decided by DynamoDB: real threads, real conditional writes against the test DynamoDB.

Each round lines the contenders up on a barrier, so their requests reach DynamoDB together.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from chalicelib.access import mfa, sessions
from chalicelib.base import errors
from chalicelib.base.models import CredentialClaim, Member, SecurityKey
from chalicelib.keys import org_keys, registration
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.key_use import stored_keys
from tests.support.keyward_client import enforce_in_table

ROUNDS = 5


def _race(*contenders: Callable[[], object]) -> list[object]:
    """Run the contenders at once; each result is a return value or the exception raised."""
    barrier = threading.Barrier(len(contenders))

    def run(contender: Callable[[], object]) -> object:
        barrier.wait()
        try:
            return contender()
        except Exception as error:  # the outcome under test, not a failure of the race
            return error

    with ThreadPoolExecutor(max_workers=len(contenders)) as pool:
        return list(pool.map(run, contenders))


def _caller(token: str, also: sessions.AlsoReads | None = None) -> sessions.Caller:
    return sessions.resolve(authorization=f"Bearer {token}", also=also)


def _register(token: str, *, challenge_id: str, name: str, credential: dict) -> registration.Registration:
    """What POST /me/mfa/keys does: parse, read the challenge with the session, register."""
    submission = registration.parse_submission(challenge_id=challenge_id, name=name, credential=credential)
    return registration.register(
        caller=_caller(token, registration.submission_reads(submission)), submission=submission
    )


def _verify(token: str, *, challenge_id: str, credential: dict) -> mfa.MfaSuccess:
    """What POST /auth/mfa/verify does: parse, read the challenge and the key with the session, verify."""
    assertion = mfa.parse_assertion(challenge_id=challenge_id, credential=credential)
    return mfa.verify(caller=_caller(token, mfa.assertion_reads(assertion)), assertion=assertion)


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_one_challenge_registers_at_most_one_key(api, round_):
    bob = api.login()
    options = api.registration_options(bob).body
    first, second = SoftwareAuthenticator(), SoftwareAuthenticator()

    def register(authenticator: SoftwareAuthenticator) -> Callable[[], object]:
        credential = authenticator.register(options["publicKey"])
        return lambda: _register(
            bob.token, challenge_id=options["challenge_id"], name="Racing key", credential=credential
        )

    outcomes = _race(register(first), register(second))

    assert sum(isinstance(o, registration.Registration) for o in outcomes) == 1, outcomes
    assert sum(isinstance(o, errors.ChallengeNotFound) for o in outcomes) == 1, outcomes
    assert len(list(SecurityKey.scan(consistent_read=True))) == 1
    assert Member.get("acme", "bob").key_count == 1


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_one_credential_is_stored_once_when_two_members_register_it_at_once(api, round_):
    shared = SoftwareAuthenticator()
    contenders = []
    for user in ("bob", "carol"):
        member = api.login(user=user)
        options = api.registration_options(member).body
        credential = shared.register(options["publicKey"])
        contenders.append(
            lambda member=member, options=options, credential=credential: _register(
                member.token, challenge_id=options["challenge_id"], name="Shared", credential=credential
            )
        )

    outcomes = _race(*contenders)

    assert sum(isinstance(o, registration.Registration) for o in outcomes) == 1, outcomes
    assert sum(isinstance(o, errors.KeyAlreadyRegistered) for o in outcomes) == 1, outcomes
    [stored] = SecurityKey.scan(consistent_read=True)
    assert CredentialClaim.get(stored.key_id).user_id == stored.user_id
    assert sorted(Member.get("acme", u).key_count for u in ("bob", "carol")) == [0, 1]


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_one_assertion_activates_at_most_one_session(api, round_):
    bob = api.login()
    authenticator = SoftwareAuthenticator()
    api.add_key(bob, authenticator)
    pending = api.login()
    options = api.mfa_options(pending).body
    assertion = authenticator.authenticate(options["publicKey"])

    outcomes = _race(
        *[lambda: _verify(pending.token, challenge_id=options["challenge_id"], credential=assertion) for _ in range(3)]
    )

    assert sum(isinstance(o, mfa.MfaSuccess) for o in outcomes) == 1, outcomes
    # A loser finds the challenge used, or, reading the session after the winner rotated its
    # token, finds its token ended.
    assert all(isinstance(o, (mfa.MfaSuccess, errors.ChallengeNotFound, errors.InvalidToken)) for o in outcomes), (
        outcomes
    )
    [key] = stored_keys()
    assert key.sign_count == 1


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_admins_deleting_a_members_last_two_keys_at_once_under_enforcement_leave_one(api, round_):
    bob = api.login()
    for name in ("First", "Second"):
        assert api.add_key(bob, SoftwareAuthenticator(), name=name).status == 201
    enforce_in_table("acme")
    admins = [api.login(user=user, admin=True) for user in ("alice", "dave")]
    first, second = sorted(key.key_id for key in SecurityKey.scan(consistent_read=True))

    outcomes = _race(
        *[
            lambda admin=admin, key_id=key_id: org_keys.delete_by_admin(
                caller=_caller(admin.token), user_id="bob", key_id=key_id
            )
            for admin, key_id in zip(admins, (first, second), strict=True)
        ]
    )

    assert sum(o is None for o in outcomes) == 1, outcomes
    assert sum(isinstance(o, errors.LastKeyRequired) for o in outcomes) == 1, outcomes
    [kept] = SecurityKey.scan(consistent_read=True)
    assert kept.key_id == (second if outcomes[0] is None else first)
    assert CredentialClaim.get(kept.key_id).user_id == "bob"
    assert Member.get("acme", "bob", consistent_read=True).key_count == 1
