"""Step-up ("sudo mode"): sensitive actions need a recent security-key check.

The rule: a sensitive action (adding or deleting a key, disabling MFA, every admin change) is
allowed within ``KEYWARD_REAUTH_WINDOW_SECONDS`` of the session's last security-key check —
passing MFA at login, registering a key, or stepping up with ``POST /auth/reauth/verify``.
A member without keys has nothing to step up with: their window starts at their IdP login, and
after it only a fresh login helps. A session opened with backup credentials counts from its
login, too. Reading and renaming never need a step-up.

Deciding needs nothing beyond what :func:`chalicelib.sessions.resolve` already read, so the
check adds no DynamoDB round trip to a request.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from chalicelib import audit, authenticator_policy, challenges, clock
from chalicelib.challenges import Ceremony
from chalicelib.config import settings
from chalicelib.errors import (
    ChallengeNotFound,
    InvalidToken,
    NotAllowed,
    NotAuthenticated,
    NotForBackupSessions,
    ReauthenticationRequired,
    SecurityKeyRequired,
    SignCountRegression,
)
from chalicelib.keys import CeremonyOptions, known_credentials
from chalicelib.models import Session
from chalicelib.sessions import Caller, SessionState
from chalicelib.storage import ConditionsFailed, transaction

if TYPE_CHECKING:
    from chalicelib.ceremonies import AuthenticationResponse
    from chalicelib.mfa import Assertion


def last_key_check(caller: Caller) -> datetime | None:
    """When the caller last proved what a sensitive action asks for, or None if never.

    For a member with keys that is the session's last security-key check; a member without keys
    and a backup-credentials session count from their login as well.
    """
    session = caller.session
    checks = [session.key_checked_at]
    if caller.is_backup or caller.member.key_count == 0:
        checks.append(session.created_at)
    known = [moment for moment in checks if moment is not None]
    return max(known) if known else None


def window_ends(caller: Caller) -> datetime | None:
    """Until when sensitive actions are allowed without another check (None: not now)."""
    checked = last_key_check(caller)
    return None if checked is None else checked + timedelta(seconds=settings().reauth_window_seconds)


def require_recent_key_check(caller: Caller) -> None:
    """Allow a sensitive action only within the window after the caller's last key check.

    Raises:
        ReauthenticationRequired: the last check is too old, or there was none.
    """
    ends = window_ends(caller)
    if ends is not None and clock.now() < ends:
        return
    if caller.is_backup or caller.member.key_count == 0:
        raise ReauthenticationRequired("This action needs a recent sign-in: sign in again.")
    raise ReauthenticationRequired("This action needs a recent security key check: step up with POST /auth/reauth/options.")


def _refuse_without_keys(caller: Caller) -> None:
    if caller.is_backup:
        raise NotForBackupSessions("A session opened with backup credentials has no security key to step up with; sign in again.")
    if caller.member.key_count == 0:
        raise SecurityKeyRequired("You hold no security key to step up with; sign in again.")


def options(*, caller: Caller) -> CeremonyOptions:
    """``POST /auth/reauth/options``: a step-up challenge for one of the caller's own keys.

    Raises:
        NotForBackupSessions, SecurityKeyRequired: the caller has no key to step up with.
    """
    from chalicelib import ceremonies

    _refuse_without_keys(caller)
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
        NotForBackupSessions, SecurityKeyRequired: the caller has no key to step up with.
        ChallengeNotFound, ChallengeExpired, ChallengeMismatch: the challenge cannot be used
            (an MFA login's challenge is of another ceremony).
        UnknownCredential, BackupEligibilityChanged, SignCountRegression and the ceremony's refusals.
        UserVerificationRequired: the authenticator policy requires user verification.
    """
    _refuse_without_keys(caller)
    try:
        return _verify(caller=caller, challenge_id=assertion.challenge_id, response=assertion.response)
    except (NotAuthenticated, NotAllowed) as refusal:
        challenges.discard(caller=caller, challenge_id=assertion.challenge_id, ceremony=Ceremony.REAUTHENTICATION,
                           action="reauth.failed", reason=refusal.code)
        raise


def _verify(*, caller: Caller, challenge_id: str, response: AuthenticationResponse) -> datetime:
    from chalicelib.mfa import checked_assertion, record_use

    session = caller.session
    expected = challenges.check(challenge=challenges.read_with(caller.read, challenge_id), ceremony=Ceremony.REAUTHENTICATION, session=session)
    key = checked_assertion(caller=caller, response=response, expected_challenge=expected)
    checked_at = clock.now()
    try:
        with transaction() as write:
            challenges.use_up(write, challenge_id=challenge_id, ceremony=Ceremony.REAUTHENTICATION, session=session)
            record_use(write, key=key, response=response, used_at=checked_at)
            write.update(
                "session",
                Session(session.org_id, session.session_id),
                actions=[Session.key_checked_at.set(checked_at)],
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
    session.key_checked_at = checked_at
    return checked_at
