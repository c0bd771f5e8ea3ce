"""Registering a security key (the WebAuthn registration ceremony): the options, the submission,
and the one transaction that adds the key, its credential claim, the counters and the audit event,
with the rules of who may register (enrolment passes, the authenticator policy, a waiting session).

Ceremony code (and py_webauthn with it) is imported only by the functions that run one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from chalicelib.access import assurance
from chalicelib.access.sessions import rotated_token
from chalicelib.base import audit, clock, metrics
from chalicelib.base.config import settings
from chalicelib.base.context import AlsoReads, Caller, SessionState
from chalicelib.base.errors import (
    AlreadyEnrolled,
    ChallengeNotFound,
    ConcurrentChange,
    InvalidToken,
    KeyAlreadyRegistered,
    NotAllowed,
    NotAuthenticated,
    RuleViolation,
    TooManyKeys,
)
from chalicelib.base.models import CredentialClaim, Member, SecurityKey, Session
from chalicelib.base.storage import ConditionsFailed, Item, transaction
from chalicelib.ceremony import authenticator_policy, challenges
from chalicelib.ceremony.authenticator_policy import Attestation, KeyFacts
from chalicelib.ceremony.challenges import Ceremony
from chalicelib.ceremony.credentials import (
    CeremonyOptions,
    credential_entry,
    keys_of,
    known_credentials,
    user_handle_for,
)
from chalicelib.counters import compliance, conditions, coverage
from chalicelib.keys import enrollment_passes

if TYPE_CHECKING:
    from chalicelib.ceremony.ceremonies import RegistrationResponse

from chalicelib.keys.management import check_name


def _credentials_with(member: Member, key: SecurityKey, *, key_count: int) -> tuple[Any, Condition | None]:
    """The update that lists ``key`` among the credentials of a member holding ``key_count``
    keys, and the condition it needs."""
    if member.credentials is not None:
        return Member.credentials[key.key_id].set(credential_entry(key)), None
    # No list yet: write it whole, from the keys the member holds now (none, for a first key);
    # the transaction's condition on the key count keeps it whole.
    held = keys_of(org_id=member.org_id, user_id=member.user_id) if key_count > 0 else []
    listed = {k.key_id: credential_entry(k) for k in held}
    listed[key.key_id] = credential_entry(key)
    return Member.credentials.set(listed), Member.key_count == key_count


def registration_options(*, caller: Caller) -> CeremonyOptions:
    """``POST /me/mfa/keys/options``: start adding a security key ("Enable" and "Add key")."""
    from chalicelib.ceremony import ceremonies

    member = caller.member
    policy = authenticator_policy.of(caller.org)
    issued = challenges.issue(ceremony=Ceremony.REGISTRATION, session=caller.session)
    options = ceremonies.registration_options(
        challenge=issued.challenge,
        user_handle=user_handle_for(org_id=member.org_id, user_id=member.user_id),
        user_name=member.email or member.user_id,
        display_name=member.name or member.email or member.user_id,
        exclude=known_credentials(member),
        user_verification=policy.user_verification.value,
        attestation="direct" if policy.attestation is Attestation.REQUIRED else "none",
        roaming_only=policy.device_bound_only,
    )
    return CeremonyOptions(challenge_id=issued.challenge_id, public_key=options)


@dataclass(frozen=True)
class Registration:
    """A registered key, and the session's new token when registering activated the session."""

    key: SecurityKey
    token: str | None


@dataclass(frozen=True)
class KeySubmission:
    """A submitted registration, parsed: the challenge it answers, the key's name, the
    authenticator's response, and the IDs the metadata may know its model by."""

    challenge_id: str
    name: str
    response: RegistrationResponse
    model_ids: tuple[str, ...]
    # An admin's enrolment pass, for a first key where the organization requires one.
    enrollment_code: object = None


def parse_submission(
    *, challenge_id: object, name: object, credential: object, enrollment_code: object = None
) -> KeySubmission:
    """Parse a ``POST /me/mfa/keys`` body completely, before anything is read or used.

    Raises:
        MalformedRequest, InvalidKeyName, MalformedCredential, CredentialIdTooLong.
    """
    from chalicelib.ceremony import ceremonies, metadata

    name = check_name(name)
    challenge_id = challenges.check_id(challenge_id)
    response = ceremonies.parse_registration(credential=credential)
    model_ids = metadata.model_ids_for(aaguid=response.aaguid, certificate_chain=response.attestation_certificates)
    return KeySubmission(
        challenge_id=challenge_id,
        name=name,
        response=response,
        model_ids=tuple(model_ids),
        enrollment_code=enrollment_code,
    )


def submission_reads(submission: KeySubmission) -> AlsoReads:
    """The challenge and the authenticator model a registration names, to be read with the session."""
    from chalicelib.ceremony import metadata

    return lambda org_id, user_id: [
        challenges.read(submission.challenge_id),
        *metadata.model_reads(submission.model_ids),
    ]


def register(*, caller: Caller, submission: KeySubmission) -> Registration:
    """``POST /me/mfa/keys``: verify the registration ceremony and store the new security key.

    Everything is parsed before anything is read (:func:`parse_submission`), so malformed input
    changes nothing; the challenge and the authenticator model came with the caller
    (:func:`submission_reads`). The key, the global claim on its credential ID, the member's key
    count and credential list, the session and the challenge's use are written in one transaction:

    - the new key becomes the session's proof (:class:`chalicelib.access.assurance.Proof`), so deleting
      it ends the session or drops it back to "must prove";
    - a member's first key is conditional on the member holding none, and moves the member to a
      new session generation, which ends their other sessions whose proof is not a key the member
      holds (:func:`chalicelib.access.sessions.ended_by_new_key`); this session moves along;
    - a ``registration_required`` session becomes ``active`` only this way — when the member had
      no key at that moment, or when it passed the MFA check with a key the organization's
      authenticator policy no longer accepts — under a new token.

    Refused ceremonies are audited.

    Raises:
        MalformedRequest, InvalidKeyName, MalformedCredential, CredentialIdTooLong: bad input.
        AlreadyEnrolled: a ``registration_required`` session of a member who holds a key.
        ChallengeNotFound, ChallengeExpired, ChallengeMismatch and the ceremony's refusals.
        UserVerificationRequired, AttestationRequired, AttestationUntrusted,
        AuthenticatorNotAllowed, SyncedCredentialNotAllowed: the organization's authenticator
            policy does not accept the key.
        KeyAlreadyRegistered: the credential is already registered, by anyone.
        TooManyKeys: the member holds the maximum number of keys.
        ConcurrentChange: the session or the member's keys changed meanwhile.
        EnrollmentPassRequired, InvalidEnrollmentPass, TooManyAttempts: the organization's
            enrolment policy (see ``enrollment_passes.admit``).
    """
    # The enrolment policy decides before the ceremony: a missing or wrong code leaves the
    # challenge usable for a retry with the right one.
    gate = enrollment_passes.admit(caller=caller, code=submission.enrollment_code)
    try:
        return _register(
            caller=caller,
            challenge_id=submission.challenge_id,
            name=submission.name,
            response=submission.response,
            gate=gate,
        )
    except (NotAuthenticated, NotAllowed, RuleViolation) as refusal:
        challenges.discard(
            caller=caller,
            challenge_id=submission.challenge_id,
            ceremony=Ceremony.REGISTRATION,
            action="key.registration_failed",
            reason=refusal.code,
        )
        raise


def _register(
    *,
    caller: Caller,
    challenge_id: str,
    name: str,
    response: RegistrationResponse,
    gate: enrollment_passes.FirstKeyGate,
) -> Registration:
    key, facts = _verified_key(caller=caller, challenge_id=challenge_id, name=name, response=response)
    plan = _plan(caller=caller, key=key, facts=facts)
    try:
        coverage.retrying(
            org_id=caller.session.org_id,
            user_id=caller.session.user_id,
            expected=conditions.standing_of(caller.member),
            compliance_version=plan.org_version,
            attempt=lambda standing: _write(
                caller=caller, plan=plan, standing=standing, challenge_id=challenge_id, gate=gate
            ),
        )
    except ConditionsFailed as refused:
        raise _refusal(caller=caller, gate=gate, refused=refused) from None
    metrics.count("Registrations", first_key=plan.first_key)
    return _applied(caller=caller, plan=plan)


# --- decide: the ceremony, the policy, and what the transaction will write ----------------------


def _verified_key(
    *,
    caller: Caller,
    challenge_id: str,
    name: str,
    response: RegistrationResponse,
) -> tuple[SecurityKey, KeyFacts]:
    """The key the ceremony proves, once the challenge, the attestation and the organization's
    authenticator policy accept it; nothing is written yet."""
    from chalicelib.ceremony import ceremonies, metadata

    session = caller.session
    expected = challenges.check(
        challenge=challenges.read_with(caller.read, challenge_id), ceremony=Ceremony.REGISTRATION, session=session
    )
    verified = ceremonies.verify_registration(response=response, expected_challenge=expected)
    verdict = metadata.examine(
        attestation_object=verified.attestation_object, client_data_json=verified.client_data_json, stored=caller.read
    )
    model = verdict.model
    facts = KeyFacts(
        aaguid=verified.aaguid,
        backup_eligible=verified.backup_eligible,
        attested=verdict.attested,
        model_status=model.status if model else None,
    )
    authenticator_policy.check_registration(
        authenticator_policy.of(caller.org),
        key=facts,
        user_verified=verified.user_verified,
        certified=verdict.certified,
        model=model.description if model else None,
    )
    key = SecurityKey(
        session.org_id,
        ceremonies.key_id_for(verified.credential_id),
        user_id=session.user_id,
        name=name,
        credential_id=verified.credential_id,
        public_key=verified.public_key,
        algorithm=verified.algorithm,
        sign_count=verified.sign_count,
        aaguid=verified.aaguid,
        attestation_format=verified.attestation_format,
        transports=list(verified.transports),
        backup_eligible=verified.backup_eligible,
        backed_up=verified.backed_up,
        created_at=clock.now(),
        model_id=model.model_id if model else None,
        model=model.description if model else None,
        model_status=facts.model_status,
        attested=verdict.attested,
    )
    return key, facts


@dataclass(frozen=True)
class _NewKey:
    """What registering ``key`` writes besides the key: the session's changes (its proof, its
    generation, a waiting session's activation under a new token) and the counters' figures."""

    key: SecurityKey
    first_key: bool
    activates_session: bool
    proved: assurance.Proof
    session_actions: list[Action]
    session_condition: Condition
    token: str | None
    token_hash: str | None
    org_version: int
    compliant: compliance.KeyFigures


def _plan(*, caller: Caller, key: SecurityKey, facts: KeyFacts) -> _NewKey:
    member = caller.member
    first_key = member.key_count == 0
    activates_session = caller.state is SessionState.REGISTRATION_REQUIRED
    # Registering proves possession of the new key: it becomes the session's proof, so that
    # deleting it, by anyone, ends the session or drops it back to "must prove".
    proved = assurance.proof(org=caller.org, key=key, at=key.created_at)
    session_actions = proved.actions()
    if first_key:
        session_actions.append(Session.member_generation.set(member.session_generation + 1))
    token = token_hash = None
    if activates_session:
        token, token_hash = rotated_token(caller)
        session_actions += [Session.state.set(SessionState.ACTIVE.value), Session.token_hash.set(token_hash)]
    return _NewKey(
        key=key,
        first_key=first_key,
        activates_session=activates_session,
        proved=proved,
        session_actions=session_actions,
        session_condition=(Session.state == caller.state.value) & (Session.token_hash == caller.token_hash),
        token=token,
        token_hash=token_hash,
        org_version=compliance.version_of(caller.org),
        compliant=compliance.compliant_delta(org=caller.org, keys=[facts]),
    )


# --- write: one transaction, conditional on what was decided ------------------------------------


def _write(
    *,
    caller: Caller,
    plan: _NewKey,
    standing: conditions.Standing,
    challenge_id: str,
    gate: enrollment_passes.FirstKeyGate,
) -> None:
    session, member, key = caller.session, caller.member, plan.key
    expected = standing.key_count
    # A member's first key and any other differ in what they decide (the session generation,
    # a waiting session's activation, the enrolment gate): a count that crossed zero meanwhile
    # is a change the request did not see.
    if (expected == 0) != plan.first_key:
        if plan.activates_session and expected > 0:
            raise AlreadyEnrolled("You hold a security key already: sign in again and pass the security key check.")
        raise ConcurrentChange("Your security keys changed while the key was being registered; try again.")
    listing, listing_condition = _credentials_with(member, key, key_count=expected)
    member_actions = [listing]
    if plan.first_key:
        same_generation = Member.session_generation == member.session_generation
        if member.session_generation == 0:
            # Members stored before session generations existed have none yet.
            same_generation |= Member.session_generation.does_not_exist()
        member_condition = same_generation
        member_actions.append(Member.session_generation.set(member.session_generation + 1))
    else:
        member_condition = Member.key_count < settings().max_keys_per_member
    if listing_condition is not None:
        member_condition &= listing_condition
    with transaction() as write:
        challenges.use_up(write, challenge_id=challenge_id, ceremony=Ceremony.REGISTRATION, session=session)
        write.save(
            Item.CLAIM,
            CredentialClaim(key.key_id, org_id=key.org_id, user_id=key.user_id),
            condition=CredentialClaim.key_id.does_not_exist(),
        )
        write.save(Item.KEY, key, condition=SecurityKey.key_id.does_not_exist())
        coverage.change_key_count(
            write,
            org_id=session.org_id,
            user_id=session.user_id,
            expected=standing,
            delta=1,
            compliant_delta=plan.compliant,
            compliance_version=plan.org_version,
            condition=gate.member_condition(member_condition),
            extra_actions=member_actions,
            org_condition=gate.org_condition(),
        )
        gate.add_to(write, key_id=key.key_id)
        write.update(
            Item.SESSION,
            Session(session.session_id),
            actions=plan.session_actions,
            condition=plan.session_condition,
        )
        write.save(
            Item.AUDIT,
            audit.event(
                org_id=session.org_id,
                actor=caller.actor,
                action="key.registered",
                target=key.key_id,
                user_id=session.user_id,
                client=caller.client,
                details={
                    "name": key.name,
                    "by": "self",
                    **({"session_activated": True} if plan.activates_session else {}),
                },
            ),
        )


def _applied(*, caller: Caller, plan: _NewKey) -> Registration:
    """The registration as stored: the caller's items show what the transaction wrote."""
    session, member = caller.session, caller.member
    if plan.activates_session:
        assert plan.token is not None
        session.state = SessionState.ACTIVE.value
        session.token_hash = plan.token_hash
    plan.proved.apply_to(session)
    if plan.first_key:
        member.session_generation += 1
        session.member_generation = member.session_generation
    member.key_count += 1
    return Registration(key=plan.key, token=plan.token)


# --- explain: which condition refused the transaction, as the caller's refusal ------------------


def _refusal(*, caller: Caller, gate: enrollment_passes.FirstKeyGate, refused: ConditionsFailed) -> Exception:
    gate.explain(refused)
    if Item.CHALLENGE in refused.labels:
        return ChallengeNotFound("The challenge was used by another request at the same time; request new options.")
    if refused.labels & {Item.CLAIM, Item.KEY}:
        return KeyAlreadyRegistered("This security key is already registered.")
    if Item.MEMBER in refused.labels:
        return _why_member_refused(caller)
    return ConcurrentChange("The session changed while the key was being registered; sign in again.")


def _why_member_refused(caller: Caller) -> Exception:
    """Name the reason the member's condition failed; only for the error, never to decide."""
    try:
        stored = Member.get(caller.session.org_id, caller.session.user_id, consistent_read=True)
    except Member.DoesNotExist:
        # Offboarded meanwhile: their membership, and every session of it, is gone.
        return InvalidToken("The session does not exist or has ended.")
    if stored.created_at != caller.member.created_at:
        # Offboarded and signed in again meanwhile: a new member, whom this session is not of.
        return InvalidToken("The session does not exist or has ended.")
    if stored.key_count >= settings().max_keys_per_member:
        return TooManyKeys(f"A member can hold at most {settings().max_keys_per_member} security keys.")
    if caller.state is SessionState.REGISTRATION_REQUIRED and stored.key_count > 0:
        return AlreadyEnrolled("You hold a security key already: sign in again and pass the security key check.")
    return ConcurrentChange("Your security keys changed while the key was being registered; try again.")
