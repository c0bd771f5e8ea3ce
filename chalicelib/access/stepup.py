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
from chalicelib.base import metrics
from chalicelib.base.context import Caller, SessionState
from chalicelib.base.errors import AuthenticatorNotAllowed
from chalicelib.ceremony.challenges import Ceremony
from chalicelib.ceremony.credentials import CeremonyOptions

if TYPE_CHECKING:
    from chalicelib.access.mfa import Assertion


def options(*, caller: Caller) -> CeremonyOptions:
    """``POST /auth/reauth/options``: a step-up challenge for one of the caller's own keys."""
    from chalicelib.access import mfa

    return mfa.challenge_options(caller=caller, ceremony=Ceremony.REAUTHENTICATION)


def verify(*, caller: Caller, assertion: Assertion) -> datetime:
    """``POST /auth/reauth/verify``: check the assertion and record the check; returns its time.

    The challenge and the key come with the caller (``mfa.assertion_reads``). The key's new
    signature counter, the session's check and the challenge's use are written in one
    transaction, conditional on the counter and the session's token being unchanged. Success and
    every refusal of the ceremony are audited; a refusal uses the challenge up too. The check is
    the MFA login's (``mfa.checked_assertion``, ``mfa.record_check``); only the ceremony, the
    session's state and what passing opens differ.

    Raises:
        MalformedRequest, MalformedCredential, CredentialIdTooLong: bad input (nothing used up).
        ChallengeNotFound, ChallengeExpired, ChallengeMismatch: the challenge cannot be used
            (an MFA login's challenge is of another ceremony).
        UnknownCredential, BackupEligibilityChanged, SignCountRegression and the ceremony's refusals.
        UserVerificationRequired: the authenticator policy requires user verification.
        AuthenticatorNotAllowed: under enforcement, a key the authenticator policy does not accept.
        InvalidToken: the session changed meanwhile.
    """
    from chalicelib.access import mfa

    ceremony = Ceremony.REAUTHENTICATION
    with mfa.refusal_uses_up(caller=caller, assertion=assertion, ceremony=ceremony, audited_as="reauth.failed"):
        key = mfa.checked_assertion(caller=caller, assertion=assertion, ceremony=ceremony)
        # A step-up proves what the MFA check proves, under the same rule: a key the organization no
        # longer accepts opens no window.
        if not assurance.accepts(caller.org, key):
            raise AuthenticatorNotAllowed(
                "The organization no longer accepts this security key; use another of your keys."
            )
        checked_at = mfa.record_check(
            caller=caller,
            assertion=assertion,
            ceremony=ceremony,
            key=key,
            from_state=SessionState.ACTIVE,
            session_actions=[],
            audited_as="reauth.succeeded",
        )
    metrics.count("StepUps")
    return checked_at
