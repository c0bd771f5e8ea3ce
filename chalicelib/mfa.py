"""The MFA login: after the IdP step, a member with security keys proves possession of one
(the WebAuthn authentication ceremony); success activates the session under a new token."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chalicelib import audit, authenticator_policy, challenges, clock, sessions
from chalicelib.challenges import Ceremony
from chalicelib.errors import (
    AuthenticatorNotAllowed,
    InvalidToken,
    NotAllowed,
    NotAuthenticated,
    SignCountRegression,
    UnknownCredential,
)
from chalicelib.keys import CeremonyOptions, keys_of, user_handle_for
from chalicelib.models import SecurityKey, Session
from chalicelib.sessions import Caller, SessionState
from chalicelib.storage import ConditionsFailed, transaction

if TYPE_CHECKING:
    from chalicelib.ceremonies import AuthenticationResponse

log = logging.getLogger("keyward.mfa")


@dataclass(frozen=True)
class MfaSuccess:
    """The activated session's new token and the key that passed."""

    token: str
    key: SecurityKey


def options(*, caller: Caller) -> CeremonyOptions:
    """``POST /auth/mfa/options``: a challenge for one of the caller's own keys."""
    from chalicelib import ceremonies

    session = caller.session
    keys = keys_of(org_id=session.org_id, user_id=session.user_id)
    issued = challenges.issue(ceremony=Ceremony.AUTHENTICATION, session=session)
    public_key = ceremonies.authentication_options(
        challenge=issued.challenge,
        allow=[ceremonies.KnownCredential(credential_id=key.credential_id, transports=key.transports) for key in keys],
        user_verification=authenticator_policy.of(caller.org).user_verification.value,
    )
    return CeremonyOptions(challenge_id=issued.challenge_id, public_key=public_key)


def verify(*, caller: Caller, challenge_id: object, credential: object) -> MfaSuccess:
    """``POST /auth/mfa/verify``: check the assertion, then activate the session with a new token.

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
        SignCountRegression: the counter did not increase (a cloned key?).
        UserVerificationRequired: the policy requires user verification and the key did not do it.
        AuthenticatorNotAllowed: under enforcement, a key the policy refuses while the member
            holds one it accepts.
        and the ceremony's refusals (OriginMismatch, RpIdMismatch, CeremonyFailed, ...).
    """
    from chalicelib import ceremonies

    challenge_id = challenges.check_id(challenge_id)
    response = ceremonies.parse_authentication(credential=credential)
    try:
        return _verify(caller=caller, challenge_id=challenge_id, response=response)
    except (NotAuthenticated, NotAllowed) as refusal:
        audit.record(org_id=caller.session.org_id, actor=caller.actor, action="mfa.failed", target=caller.session.user_id,
                     user_id=caller.session.user_id, client=caller.client, details={"reason": refusal.code})
        raise


def _verify(*, caller: Caller, challenge_id: str, response: AuthenticationResponse) -> MfaSuccess:
    from chalicelib import ceremonies

    session = caller.session
    expected = challenges.consume(challenge_id=challenge_id, ceremony=Ceremony.AUTHENTICATION, session=session)

    try:
        key = SecurityKey.get(session.org_id, ceremonies.key_id_for(response.credential_id), consistent_read=True)
    except SecurityKey.DoesNotExist:
        raise UnknownCredential("This security key is not registered to you.") from None
    if key.user_id != session.user_id or key.credential_id != response.credential_id:
        raise UnknownCredential("This security key is not registered to you.")
    if response.user_handle is not None and response.user_handle != user_handle_for(
        org_id=session.org_id, user_id=session.user_id
    ):
        raise UnknownCredential("The assertion names another user.")

    ceremonies.verify_authentication(response=response, expected_challenge=expected, public_key=key.public_key)
    if ceremonies.sign_count_regressed(stored=key.sign_count, presented=response.sign_count):
        log.warning(
            "sign-count regression: org=%s user=%s key=%s stored=%d presented=%d",
            session.org_id, session.user_id, key.key_id, key.sign_count, response.sign_count,
        )
        audit.record(org_id=session.org_id, actor=caller.actor, action="key.sign_count_regression", target=key.key_id,
                     user_id=session.user_id, client=caller.client,
                     details={"stored": key.sign_count, "presented": response.sign_count})
        raise SignCountRegression("The security key's signature counter went backwards; it may have been cloned.")
    next_state = _state_after_check(caller=caller, key=key, user_verified=response.user_verified)

    token, token_hash = sessions.rotated_token(caller)
    used_at = clock.now()
    try:
        with transaction() as write:
            write.update(
                "key",
                SecurityKey(key.org_id, key.key_id),
                actions=[
                    SecurityKey.sign_count.set(response.sign_count),
                    SecurityKey.last_used_at.set(used_at),
                    SecurityKey.backed_up.set(response.backed_up),
                ],
                condition=SecurityKey.key_id.exists() & (SecurityKey.sign_count == key.sign_count),
            )
            write.update(
                "session",
                Session(session.org_id, session.session_id),
                actions=[
                    Session.token_hash.set(token_hash),
                    Session.state.set(next_state.value),
                    Session.verified_key_id.set(key.key_id),
                ],
                condition=(Session.token_hash == caller.token_hash) & (Session.state == SessionState.MFA_REQUIRED.value),
            )
            write.save("audit", audit.event(
                org_id=session.org_id, actor=caller.actor, action="mfa.succeeded", target=key.key_id,
                user_id=session.user_id, client=caller.client, details={"session_id": session.session_id},
            ))
    except ConditionsFailed as refused:
        if "key" in refused.labels:
            raise SignCountRegression("The security key was used by another request at the same time.") from None
        raise InvalidToken("The session changed meanwhile; sign in again.") from None
    session.state = next_state.value
    session.token_hash = token_hash
    session.verified_key_id = key.key_id
    key.sign_count, key.last_used_at = response.sign_count, used_at
    return MfaSuccess(token=token, key=key)


def _state_after_check(*, caller: Caller, key: SecurityKey, user_verified: bool) -> SessionState:
    """Where a passed security-key check leads under the organization's authenticator policy."""
    policy = authenticator_policy.of(caller.org)
    authenticator_policy.check_assertion(policy, user_verified=user_verified)
    if not caller.org.mfa_enforced or authenticator_policy.is_compliant(policy, key):
        return SessionState.ACTIVE
    session = caller.session
    if any(authenticator_policy.is_compliant(policy, other) for other in keys_of(org_id=session.org_id, user_id=session.user_id)):
        raise AuthenticatorNotAllowed("The organization no longer accepts this security key; use another of your keys.")
    return SessionState.REGISTRATION_REQUIRED
