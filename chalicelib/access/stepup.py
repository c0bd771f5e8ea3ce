"""Step-up ("sudo mode"): a fresh security-key check of an active session.

Sensitive actions (adding or deleting a key, disabling MFA, every admin change) are allowed
within ``KEYWARD_REAUTH_WINDOW_SECONDS`` of the session's last proof of a key the member holds
(chalicelib/access/assurance.py decides); stepping up with ``POST /auth/reauth/verify`` makes a new one.
Who may step up at all is the assurance rule's too: backup credentials and members without keys
have nothing to step up with.
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from chalicelib.access import assurance
from chalicelib.base import audit, clock
from chalicelib.base.context import Caller, SessionState
from chalicelib.base.errors import (
    AuthenticatorNotAllowed,
    ChallengeNotFound,
    InvalidToken,
    NotAllowed,
    NotAuthenticated,
    SignCountRegression,
)
from chalicelib.base.models import Session
from chalicelib.base.storage import ConditionsFailed, transaction
from chalicelib.ceremony import authenticator_policy, challenges
from chalicelib.ceremony.challenges import Ceremony
from chalicelib.ceremony.credentials import CeremonyOptions, known_credentials

if TYPE_CHECKING:
    from chalicelib.access.mfa import Assertion
    from chalicelib.ceremony.ceremonies import AuthenticationResponse


def options(*, caller: Caller) -> CeremonyOptions:
    """``POST /auth/reauth/options``: a step-up challenge for one of the caller's own keys."""
    from chalicelib.ceremony import ceremonies

    session = caller.session
    issued = challenges.issue(ceremony=Ceremony.REAUTHENTICATION, session=session)
    public_key = ceremonies.authentication_options(
        challenge=issued.challenge,
        allow=known_credentials(caller.member),
        user_verification=authenticator_policy.of(caller.org).user_verification.value,
    )
    return CeremonyOptions(challenge_id=issued.challenge_id, public_key=public_key)


def verify(*, caller: Caller, assertion: Assertion) -> datetime:
    """``POST /auth/reauth/verify``: check the assertion and record the check; returns its time.

    The challenge and the key come with the caller (``mfa.assertion_reads``). The key's new
    signature counter, the session's check and the challenge's use are written in one
    transaction, conditional on the counter and the session's token being unchanged. Success and
    every refusal of the ceremony are audited; a refusal uses the challenge up too.

    Raises:
        MalformedRequest, MalformedCredential, CredentialIdTooLong: bad input (nothing used up).
        ChallengeNotFound, ChallengeExpired, ChallengeMismatch: the challenge cannot be used
            (an MFA login's challenge is of another ceremony).
        UnknownCredential, BackupEligibilityChanged, SignCountRegression and the ceremony's refusals.
        UserVerificationRequired: the authenticator policy requires user verification.
        AuthenticatorNotAllowed: under enforcement, a key the authenticator policy does not accept.
    """
    try:
        return _verify(caller=caller, challenge_id=assertion.challenge_id, response=assertion.response)
    except (NotAuthenticated, NotAllowed) as refusal:
        challenges.discard(caller=caller, challenge_id=assertion.challenge_id, ceremony=Ceremony.REAUTHENTICATION,
                           action="reauth.failed", reason=refusal.code)
        raise


def _verify(*, caller: Caller, challenge_id: str, response: AuthenticationResponse) -> datetime:
    from chalicelib.access.mfa import checked_assertion, record_use

    session = caller.session
    expected = challenges.check(challenge=challenges.read_with(caller.read, challenge_id), ceremony=Ceremony.REAUTHENTICATION, session=session)
    key = checked_assertion(caller=caller, response=response, expected_challenge=expected)
    # A step-up proves what the MFA check proves, under the same rule: a key the organization no
    # longer accepts opens no window.
    if not assurance.accepts(caller.org, key):
        raise AuthenticatorNotAllowed("The organization no longer accepts this security key; use another of your keys.")
    checked_at = clock.now()
    proved = assurance.proof(org=caller.org, key=key, at=checked_at)
    try:
        with transaction() as write:
            challenges.use_up(write, challenge_id=challenge_id, ceremony=Ceremony.REAUTHENTICATION, session=session)
            record_use(write, key=key, response=response, used_at=checked_at)
            write.update(
                "session",
                Session(session.org_id, session.session_id),
                actions=proved.actions(),
                condition=(Session.token_hash == caller.token_hash) & (Session.state == SessionState.ACTIVE.value),
            )
            write.save("audit", audit.event(
                org_id=session.org_id, actor=caller.actor, action="reauth.succeeded", target=key.key_id,
                user_id=session.user_id, client=caller.client, details={"session_id": session.session_id},
            ))
    except ConditionsFailed as refused:
        if challenges.LABEL in refused.labels:
            raise ChallengeNotFound("The challenge was used by another request at the same time; request new options.") from None
        if "key" in refused.labels:
            raise SignCountRegression("The security key was used by another request at the same time.") from None
        raise InvalidToken("The session changed meanwhile; sign in again.") from None
    proved.apply_to(session)
    return checked_at
