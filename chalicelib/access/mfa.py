"""The MFA login: after the IdP step, a member with security keys proves possession of one
(the WebAuthn authentication ceremony); success activates the session under a new token.

The key check itself is the step-up's too (chalicelib/access/stepup.py): its options, the checks
of the assertion (:func:`checked_assertion`), the one transaction that records it
(:func:`record_check`) and the audited use of the challenge on a refusal (:func:`refusal_uses_up`)
live here, once, with the ceremony as their argument."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from chalicelib.access import assurance, sessions
from chalicelib.base import audit, clock, metrics
from chalicelib.base.context import AlsoRead, AlsoReads, Caller, SessionState
from chalicelib.base.errors import (
    AuthenticatorNotAllowed,
    BackupEligibilityChanged,
    ChallengeNotFound,
    InvalidToken,
    NotAllowed,
    NotAuthenticated,
    SignCountRegression,
    UnknownCredential,
)
from chalicelib.base.models import CredentialClaim, SecurityKey, Session
from chalicelib.base.storage import ConditionsFailed, Item, LabelledWrite, transaction
from chalicelib.ceremony import authenticator_policy, challenges
from chalicelib.ceremony.challenges import Ceremony
from chalicelib.ceremony.credentials import (
    CeremonyOptions,
    keys_of,
    known_credentials,
    user_handle_for,
    with_use,
)

if TYPE_CHECKING:
    from pynamodb.expressions.update import Action as UpdateAction

    from chalicelib.ceremony.ceremonies import AuthenticationResponse

log = logging.getLogger("keyward.mfa")


KEY_LABEL = "key"
CLAIM_LABEL = "claim"


@dataclass(frozen=True)
class Assertion:
    """A submitted assertion, parsed: the challenge it answers and the authenticator's response."""

    challenge_id: str
    response: AuthenticationResponse


def parse_assertion(*, challenge_id: object, credential: object) -> Assertion:
    """Parse a ``{challenge_id, credential}`` body completely, before anything is read or used.

    Raises:
        MalformedRequest, MalformedCredential, CredentialIdTooLong.
    """
    from chalicelib.ceremony import ceremonies

    return Assertion(
        challenge_id=challenges.check_id(challenge_id), response=ceremonies.parse_authentication(credential=credential)
    )


def assertion_reads(assertion: Assertion) -> AlsoReads:
    """The challenge and the key an assertion names, with the key's claim (which holds its use),
    to be read with the session."""
    from chalicelib.ceremony import ceremonies

    key_id = ceremonies.key_id_for(assertion.response.credential_id)
    return lambda org_id, user_id: [
        challenges.read(assertion.challenge_id),
        AlsoRead(KEY_LABEL, SecurityKey, org_id, key_id),
        AlsoRead(CLAIM_LABEL, CredentialClaim, key_id),
    ]


@dataclass(frozen=True)
class MfaSuccess:
    """The activated session's new token and the key that passed."""

    token: str
    key: SecurityKey


def options(*, caller: Caller) -> CeremonyOptions:
    """``POST /auth/mfa/options``: a challenge for one of the caller's own keys."""
    return challenge_options(caller=caller, ceremony=Ceremony.AUTHENTICATION)


def challenge_options(*, caller: Caller, ceremony: Ceremony) -> CeremonyOptions:
    """A challenge of ``ceremony`` for one of the caller's own keys, under the organization's
    user-verification requirement: the options of an MFA login and of a step-up alike."""
    from chalicelib.ceremony import ceremonies

    issued = challenges.issue(ceremony=ceremony, session=caller.session)
    public_key = ceremonies.authentication_options(
        challenge=issued.challenge,
        allow=known_credentials(caller.member),
        user_verification=authenticator_policy.of(caller.org).user_verification.value,
    )
    return CeremonyOptions(challenge_id=issued.challenge_id, public_key=public_key)


def verify(*, caller: Caller, assertion: Assertion) -> MfaSuccess:
    """``POST /auth/mfa/verify``: check the assertion, then activate the session with a new token.

    The challenge and the key come with the caller (:func:`assertion_reads`); the challenge is
    used up in the transaction that activates the session, or with the refusal's audit event.

    The key's new signature counter and the session's new state and token are written in one
    transaction, conditional on the counter and the old token being unchanged: of two requests
    with one assertion, at most one activates a session.

    Under enforcement, a member whose keys all fall short of the organization's authenticator
    policy passes with one of them into ``registration_required``: they must add a key that
    counts before anything else.

    Raises:
        MalformedRequest, MalformedCredential, CredentialIdTooLong: bad input (nothing used up).
        ChallengeNotFound, ChallengeExpired, ChallengeMismatch: the challenge cannot be used.
        UnknownCredential: the credential is not one of the caller's keys.
        BackupEligibilityChanged: the key's backup-eligible flag is not the registered one.
        SignCountRegression: the counter did not increase (a cloned key?).
        UserVerificationRequired: the policy requires user verification and the key did not do it.
        AuthenticatorNotAllowed: under enforcement, a key the policy refuses while the member
            holds one it accepts.
        and the ceremony's refusals (OriginMismatch, RpIdMismatch, CeremonyFailed, ...).
    """
    ceremony = Ceremony.AUTHENTICATION
    with refusal_uses_up(caller=caller, assertion=assertion, ceremony=ceremony, audited_as="mfa.failed"):
        key = checked_assertion(caller=caller, assertion=assertion, ceremony=ceremony)
        next_state = _state_after_check(caller=caller, key=key)
        token, token_hash = sessions.rotated_token(caller)
        record_check(
            caller=caller,
            assertion=assertion,
            ceremony=ceremony,
            key=key,
            from_state=SessionState.MFA_REQUIRED,
            session_actions=[Session.token_hash.set(token_hash), Session.state.set(next_state.value)],
            audited_as="mfa.succeeded",
        )
    session = caller.session
    session.state = next_state.value
    session.token_hash = token_hash
    metrics.count("MfaPasses")
    return MfaSuccess(token=token, key=key)


@contextmanager
def refusal_uses_up(*, caller: Caller, assertion: Assertion, ceremony: Ceremony, audited_as: str) -> Iterator[None]:
    """Refusals of a key check inside the block use the challenge up with an audit event
    (``audited_as``, with the refusal's code), so that a refused assertion cannot be tried again
    and repeated failures show in the audit trail; bad input raises before the block."""
    try:
        yield
    except (NotAuthenticated, NotAllowed) as refusal:
        challenges.discard(
            caller=caller,
            challenge_id=assertion.challenge_id,
            ceremony=ceremony,
            action=audited_as,
            reason=refusal.code,
        )
        raise


def checked_assertion(*, caller: Caller, assertion: Assertion, ceremony: Ceremony) -> SecurityKey:
    """The caller's key that made this assertion, once the assertion verified (§7.2): the
    challenge was issued to this session for ``ceremony`` and is still usable, the key is the
    caller's own, the user handle names the caller, the signature is good, the backup-eligible
    flag is the one stored at registration and the signature counter went up. The new counter is
    written by :func:`record_check`, conditional on the stored one (``key.sign_count``).

    Raises:
        ChallengeNotFound, ChallengeExpired, ChallengeMismatch: the challenge cannot be used.
        UnknownCredential, BackupEligibilityChanged, SignCountRegression and the ceremony's refusals.
        UserVerificationRequired: the authenticator policy requires user verification.
    """
    from chalicelib.ceremony import ceremonies

    session = caller.session
    response = assertion.response
    expected_challenge = challenges.check(
        challenge=challenges.read_with(caller.read, assertion.challenge_id), ceremony=ceremony, session=session
    )
    key = (
        caller.read[KEY_LABEL]
        if KEY_LABEL in caller.read
        else _key_named(session.org_id, ceremonies.key_id_for(response.credential_id))
    )
    if key is None:
        raise UnknownCredential("This security key is not registered to you.")
    if key.user_id != session.user_id or key.credential_id != response.credential_id:
        raise UnknownCredential("This security key is not registered to you.")
    key = with_use(key, claim_of(caller, key))
    if response.user_handle is not None and response.user_handle != user_handle_for(
        org_id=session.org_id, user_id=session.user_id
    ):
        raise UnknownCredential("The assertion names another user.")

    ceremonies.verify_authentication(
        response=response, expected_challenge=expected_challenge, public_key=key.public_key
    )
    # §7.2 step 17: backup eligibility is fixed when a credential is created; a change means
    # another credential, or another authenticator, behind the same ID.
    if response.backup_eligible != bool(key.backup_eligible):
        raise BackupEligibilityChanged("The security key's backup eligibility differs from its registration.")
    if ceremonies.sign_count_regressed(stored=int(key.sign_count), presented=response.sign_count):
        log.warning(
            "sign-count regression: org=%s user=%s key=%s stored=%d presented=%d",
            session.org_id,
            session.user_id,
            key.key_id,
            key.sign_count,
            response.sign_count,
        )
        audit.record(
            org_id=session.org_id,
            actor=caller.actor,
            action="key.sign_count_regression",
            target=key.key_id,
            user_id=session.user_id,
            client=caller.client,
            details={"stored": key.sign_count, "presented": response.sign_count},
        )
        raise SignCountRegression("The security key's signature counter went backwards; it may have been cloned.")
    # Every check, the MFA login and a step-up alike, meets the organization's policy.
    authenticator_policy.check_assertion(
        authenticator_policy.of(caller.org), registered_at=key.created_at, user_verified=response.user_verified
    )
    return key


def record_use(
    write: LabelledWrite,
    *,
    key: SecurityKey,
    claim: CredentialClaim | None,
    response: AuthenticationResponse,
    used_at: datetime,
) -> None:
    """Add the key's new signature counter, last use and backup state to ``write`` (``Item.KEY``),
    conditional on the counter it was read with: of two checks with one assertion, at most one
    commits. They are written to the key's claim, whose partition is the key's own, not its
    organization's (:class:`CredentialClaim`); only a key without a claim keeps them itself."""
    if claim is None:
        write.update(
            Item.KEY,
            SecurityKey(key.org_id, key.key_id),
            actions=[
                SecurityKey.sign_count.set(response.sign_count),
                SecurityKey.last_used_at.set(used_at),
                SecurityKey.backed_up.set(response.backed_up),
            ],
            condition=SecurityKey.key_id.exists() & (SecurityKey.sign_count == key.sign_count),
        )
        return
    counter_as_read = (
        CredentialClaim.sign_count == key.sign_count
        if claim.sign_count is not None
        else CredentialClaim.sign_count.does_not_exist()
    )
    write.update(
        Item.KEY,
        CredentialClaim(key.key_id),
        actions=[
            CredentialClaim.sign_count.set(response.sign_count),
            CredentialClaim.last_used_at.set(used_at),
            CredentialClaim.backed_up.set(response.backed_up),
        ],
        # The claim goes with its key: one deleted meanwhile fails the check.
        condition=CredentialClaim.key_id.exists() & (CredentialClaim.user_id == key.user_id) & counter_as_read,
    )


def _key_named(org_id: str, key_id: str) -> SecurityKey | None:
    """The key, where the request did not read it with its session (its claim: :func:`claim_of`)."""
    try:
        return SecurityKey.get(org_id, key_id, consistent_read=True)
    except SecurityKey.DoesNotExist:
        return None


def claim_of(caller: Caller, key: SecurityKey) -> CredentialClaim | None:
    """The claim of the key a check names, as read with the session (or read now, once: the
    counter the check wrote must be the one it read)."""
    if CLAIM_LABEL not in caller.read:
        try:
            claim: CredentialClaim | None = CredentialClaim.get(key.key_id, consistent_read=True)
        except CredentialClaim.DoesNotExist:
            claim = None
        caller.read = {**caller.read, CLAIM_LABEL: claim}
    return caller.read[CLAIM_LABEL]


def record_check(
    *,
    caller: Caller,
    assertion: Assertion,
    ceremony: Ceremony,
    key: SecurityKey,
    from_state: SessionState,
    session_actions: list[UpdateAction],
    audited_as: str,
) -> datetime:
    """Record a passed key check in one transaction: the challenge used up, the key's new counter
    and last use, the session's proof of the key (with ``session_actions``, the ceremony's own
    change of the session) and the audit event ``audited_as``. Each write is conditional on what
    the check read (the challenge unused, the counter and the token unchanged, the session still
    in ``from_state``), so of two requests with one assertion at most one commits; the refused
    one learns which condition failed. Returns the check's time; the request's session and key
    show what was written.

    Raises:
        ChallengeNotFound: the challenge was used by another request meanwhile.
        SignCountRegression: the key was used by another request meanwhile.
        InvalidToken: the session changed meanwhile.
    """
    session = caller.session
    response = assertion.response
    checked_at = clock.now()
    proved = assurance.proof(org=caller.org, key=key, at=checked_at)
    try:
        with transaction() as write:
            challenges.use_up(write, challenge_id=assertion.challenge_id, ceremony=ceremony, session=session)
            record_use(write, key=key, claim=claim_of(caller, key), response=response, used_at=checked_at)
            write.update(
                Item.SESSION,
                Session(session.session_id),
                actions=[*session_actions, *proved.actions()],
                condition=(Session.token_hash == caller.token_hash) & (Session.state == from_state.value),
            )
            write.save(
                Item.AUDIT,
                audit.event(
                    org_id=session.org_id,
                    actor=caller.actor,
                    action=audited_as,
                    target=key.key_id,
                    user_id=session.user_id,
                    client=caller.client,
                    details={"session_id": session.session_id},
                    spread_over=caller.org,
                ),
            )
    except ConditionsFailed as refused:
        if Item.CHALLENGE in refused.labels:
            raise ChallengeNotFound(
                "The challenge was used by another request at the same time; request new options."
            ) from None
        if Item.KEY in refused.labels:
            raise SignCountRegression("The security key was used by another request at the same time.") from None
        raise InvalidToken("The session changed meanwhile; sign in again.") from None
    proved.apply_to(session)
    key.sign_count, key.last_used_at = response.sign_count, checked_at
    return checked_at


def _state_after_check(*, caller: Caller, key: SecurityKey) -> SessionState:
    """Where a passed MFA check leads under the organization's authenticator policy."""
    if assurance.accepts(caller.org, key):
        return SessionState.ACTIVE
    policy = authenticator_policy.of(caller.org)
    session = caller.session
    if any(
        authenticator_policy.is_compliant(policy, other)
        for other in keys_of(org_id=session.org_id, user_id=session.user_id)
    ):
        raise AuthenticatorNotAllowed("The organization no longer accepts this security key; use another of your keys.")
    return SessionState.REGISTRATION_REQUIRED
