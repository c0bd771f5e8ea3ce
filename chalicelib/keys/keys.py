"""A member's security keys: register (the WebAuthn registration ceremony), list, rename, delete,
and the last-key rule under enforcement.

Ceremony code (and py_webauthn with it) is imported only by the functions that run one.
Every write that adds or removes a key changes the member's ``key_count`` in the same
transaction; conditions on that counter and on the organization's enforcement flag keep the
rules true when requests race.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pynamodb.expressions.condition import Condition

from chalicelib.access import assurance
from chalicelib.base import audit, clock, pagination
from chalicelib.ceremony import authenticator_policy, challenges
from chalicelib.counters import compliance, coverage
from chalicelib.counters import conditions
from chalicelib.keys import enrollment
from chalicelib.ceremony.authenticator_policy import Attestation, AuthenticatorPolicy, KeyFacts
from chalicelib.ceremony.challenges import Ceremony
from chalicelib.base.config import settings
from chalicelib.base.errors import (
    AlreadyEnrolled,
    ChallengeNotFound,
    ConcurrentChange,
    InvalidKeyName,
    InvalidToken,
    KeyAlreadyRegistered,
    KeyNotFound,
    LastKeyRequired,
    NotAllowed,
    NotAuthenticated,
    RuleViolation,
    TooManyKeys,
)
from chalicelib.base.models import CredentialClaim, Member, Organization, SecurityKey, Session
from chalicelib.access.sessions import (
    AlsoReads,
    Caller,
    SessionState,
    end_sessions,
    rotated_token,
    sessions_of,
)
from chalicelib.base.storage import ConditionsFailed, LabelledWrite, transaction
from chalicelib.ceremony.credentials import CeremonyOptions, credential_entry, keys_of, known_credentials, user_handle_for

if TYPE_CHECKING:
    from chalicelib.ceremony.ceremonies import RegistrationResponse

MAX_NAME_LENGTH = 64
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{22}")


def check_name(name: object) -> str:
    """A key name as stored: 1–64 printable characters after trimming (NFC-normalized)."""
    if not isinstance(name, str):
        raise InvalidKeyName("'name' must be a string.")
    name = unicodedata.normalize("NFC", name).strip()
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise InvalidKeyName(f"'name' must be 1 to {MAX_NAME_LENGTH} characters long after trimming.")
    if not name.isprintable():
        raise InvalidKeyName("'name' may only contain printable characters.")
    return name


def check_key_id(key_id: str) -> str:
    """A key ID from a URL, refused as unknown unless it has the shape ``ceremonies.key_id_for`` gives."""
    if not _KEY_ID.fullmatch(key_id):
        raise KeyNotFound("No such security key.")
    return key_id


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


def _standing_and_listing(*, org_id: str, user_id: str) -> tuple[conditions.Standing, bool]:
    """Another member's standing now, and whether their item lists credentials (removing from a
    list that is absent would fail)."""
    try:
        stored = Member.get(org_id, user_id, consistent_read=True)
    except Member.DoesNotExist:
        stored = Member(org_id, user_id, key_count=0)
    return conditions.standing_of(stored), stored.credentials is not None


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


def parse_submission(*, challenge_id: object, name: object, credential: object, enrollment_code: object = None) -> KeySubmission:
    """Parse a ``POST /me/mfa/keys`` body completely, before anything is read or used.

    Raises:
        MalformedRequest, InvalidKeyName, MalformedCredential, CredentialIdTooLong.
    """
    from chalicelib.ceremony import ceremonies, metadata

    name = check_name(name)
    challenge_id = challenges.check_id(challenge_id)
    response = ceremonies.parse_registration(credential=credential)
    model_ids = metadata.model_ids_for(aaguid=response.aaguid, certificate_chain=response.attestation_certificates)
    return KeySubmission(challenge_id=challenge_id, name=name, response=response, model_ids=tuple(model_ids),
                         enrollment_code=enrollment_code)


def submission_reads(submission: KeySubmission) -> AlsoReads:
    """The challenge and the authenticator model a registration names, to be read with the session."""
    from chalicelib.ceremony import metadata

    return lambda org_id, user_id: [challenges.read(submission.challenge_id), *metadata.model_reads(submission.model_ids)]


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
            enrolment policy (see ``enrollment.admit``).
    """
    # The enrolment policy decides before the ceremony: a missing or wrong code leaves the
    # challenge usable for a retry with the right one.
    gate = enrollment.admit(caller=caller, code=submission.enrollment_code)
    try:
        return _register(caller=caller, challenge_id=submission.challenge_id, name=submission.name,
                         response=submission.response, gate=gate)
    except (NotAuthenticated, NotAllowed, RuleViolation) as refusal:
        challenges.discard(caller=caller, challenge_id=submission.challenge_id, ceremony=Ceremony.REGISTRATION,
                           action="key.registration_failed", reason=refusal.code)
        raise


def _register(
    *, caller: Caller, challenge_id: str, name: str, response: RegistrationResponse, gate: enrollment.FirstKeyGate,
) -> Registration:
    from chalicelib.ceremony import ceremonies, metadata

    session = caller.session
    expected = challenges.check(challenge=challenges.read_with(caller.read, challenge_id), ceremony=Ceremony.REGISTRATION, session=session)
    verified = ceremonies.verify_registration(response=response, expected_challenge=expected)
    verdict = metadata.examine(attestation_object=verified.attestation_object, client_data_json=verified.client_data_json,
                               stored=caller.read)
    model = verdict.model
    facts = KeyFacts(aaguid=verified.aaguid, backup_eligible=verified.backup_eligible, attested=verdict.attested,
                     model_status=model.status if model else None)
    authenticator_policy.check_registration(
        authenticator_policy.of(caller.org), key=facts, user_verified=verified.user_verified,
        certified=verdict.certified, model=model.description if model else None,
    )

    registered_at = clock.now()
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
        created_at=registered_at,
        model_id=model.model_id if model else None,
        model=model.description if model else None,
        model_status=facts.model_status,
        attested=verdict.attested,
    )
    claim = CredentialClaim(key.key_id, org_id=key.org_id, user_id=key.user_id)
    member = caller.member
    first_key = member.key_count == 0
    activates_session = caller.state is SessionState.REGISTRATION_REQUIRED

    # Registering proves possession of the new key: it becomes the session's proof, so that
    # deleting it, by anyone, ends the session or drops it back to "must prove".
    proved = assurance.proof(org=caller.org, key=key, at=registered_at)
    session_actions = proved.actions()
    if first_key:
        session_actions.append(Session.member_generation.set(member.session_generation + 1))
    session_condition = (Session.state == caller.state.value) & (Session.token_hash == caller.token_hash)
    token = None
    if activates_session:
        token, token_hash = rotated_token(caller)
        session_actions += [Session.state.set(SessionState.ACTIVE.value), Session.token_hash.set(token_hash)]

    org_version = compliance.version_of(caller.org)
    compliant = compliance.compliant_delta(org=caller.org, keys=[facts])

    def store(standing: conditions.Standing) -> None:
        expected = standing.key_count
        # A member's first key and any other differ in what they decide (the session generation,
        # a waiting session's activation, the enrolment gate): a count that crossed zero meanwhile
        # is a change the request did not see.
        if (expected == 0) != first_key:
            if activates_session and expected > 0:
                raise AlreadyEnrolled("You hold a security key already: sign in again and pass the security key check.")
            raise ConcurrentChange("Your security keys changed while the key was being registered; try again.")
        listing, listing_condition = _credentials_with(member, key, key_count=expected)
        member_actions = [listing]
        if first_key:
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
            write.save("claim", claim, condition=CredentialClaim.key_id.does_not_exist())
            write.save("key", key, condition=SecurityKey.key_id.does_not_exist())
            coverage.change_key_count(
                write, org_id=session.org_id, user_id=session.user_id, expected=standing, delta=1,
                compliant_delta=compliant, compliance_version=org_version,
                condition=gate.member_condition(member_condition), extra_actions=member_actions,
                org_condition=gate.org_condition(),
            )
            gate.add_to(write, key_id=key.key_id)
            write.update(
                "session",
                Session(session.org_id, session.session_id),
                actions=session_actions,
                condition=session_condition,
            )
            write.save("audit", audit.event(
                org_id=session.org_id, actor=caller.actor, action="key.registered", target=key.key_id,
                user_id=session.user_id, client=caller.client,
                details={"name": name, "by": "self", **({"session_activated": True} if activates_session else {})},
            ))

    try:
        coverage.retrying(org_id=session.org_id, user_id=session.user_id, expected=conditions.standing_of(member),
                          compliance_version=org_version, attempt=store)
    except ConditionsFailed as refused:
        gate.explain(refused)
        if challenges.LABEL in refused.labels:
            raise ChallengeNotFound("The challenge was used by another request at the same time; request new options.") from None
        if refused.labels & {"claim", "key"}:
            raise KeyAlreadyRegistered("This security key is already registered.") from None
        if "member" in refused.labels:
            raise _why_member_refused(caller) from None
        raise ConcurrentChange("The session changed while the key was being registered; sign in again.") from None
    if activates_session:
        assert token is not None
        session.state = SessionState.ACTIVE.value
        session.token_hash = token_hash
    proved.apply_to(session)
    if first_key:
        member.session_generation += 1
        session.member_generation = member.session_generation
    member.key_count += 1
    return Registration(key=key, token=token)


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


def list_keys(*, caller: Caller) -> list[SecurityKey]:
    """``GET /me/mfa/keys``."""
    return keys_of(org_id=caller.session.org_id, user_id=caller.session.user_id)


def rename(*, caller: Caller, key_id: str, name: object) -> SecurityKey:
    """``PATCH /me/mfa/keys/{id}``: only the name of one's own key can change."""
    name = check_name(name)
    org_id, user_id = caller.session.org_id, caller.session.user_id
    key_id = check_key_id(key_id)
    # Read first, for the answer: a read failing after the commit would report 503 "nothing was
    # changed" for a rename made. The write's condition still decides ownership.
    try:
        key = SecurityKey.get(org_id, key_id, consistent_read=True)
    except SecurityKey.DoesNotExist:
        raise KeyNotFound("No such security key.") from None
    try:
        with transaction() as write:
            write.update(
                "key",
                SecurityKey(org_id, key_id),
                actions=[SecurityKey.name.set(name)],
                condition=SecurityKey.key_id.exists() & (SecurityKey.user_id == user_id),
            )
            write.save("audit", audit.event(
                org_id=org_id, actor=caller.actor, action="key.renamed", target=key_id, user_id=user_id,
                client=caller.client, details={"name": name},
            ))
    except ConditionsFailed:
        raise KeyNotFound("No such security key.") from None
    key.name = name
    return key


def delete(*, caller: Caller, key_id: str) -> None:
    """``DELETE /me/mfa/keys/{id}``: remove one of one's own keys.

    While the organization enforces MFA, the member's last key stays (409 LastKeyRequired).
    The rule is a condition on the member's key count when enforcement is on, and a condition
    that enforcement is still off otherwise — so it holds when deletes race each other or an
    admin enforcing MFA.
    """
    try:
        _remove_key(caller=caller, user_id=caller.session.user_id, key_id=check_key_id(key_id), by="self")
    except ConditionsFailed as refused:
        if "key" in refused.labels:
            raise KeyNotFound("No such security key.") from None
        raise LastKeyRequired("The organization enforces MFA: your last security key cannot be deleted.") from None


def _remove_key(*, caller: Caller, user_id: str, key_id: str, by: str) -> None:
    """Delete a member's key in one transaction with its credential claim, the member's key
    count, the member's other sessions that passed MFA with it, and the audit event.

    A member deleting their own key (``by="self"``) keeps the last one while the organization
    enforces MFA: a condition on the key count when enforcement is on, and a condition that it
    is still off otherwise. An admin (``by="admin"``) may delete any key.

    Raises:
        ConditionsFailed: ``key`` when the member has no such key; otherwise the last-key rule.
    """
    org_id = caller.session.org_id
    org = caller.org
    for attempt in range(conditions.MAX_ATTEMPTS):
        try:
            _remove_key_under(org=org, caller=caller, user_id=user_id, key_id=key_id, by=by)
            return
        except ConcurrentChange:
            # The policy or a model's status changed since the organization was read: deleting a
            # key does not depend on them, so count again under the new version.
            fresh = Organization.get(org_id, consistent_read=True)
            if compliance.version_of(fresh) == compliance.version_of(org) or attempt == conditions.MAX_ATTEMPTS - 1:
                raise
            org = fresh


def _remove_key_under(*, org: Organization, caller: Caller, user_id: str, key_id: str, by: str) -> None:
    """:func:`_remove_key`, with the organization as read (its enforcement and compliance version)."""
    org_id = caller.session.org_id
    keep_last = by == "self"
    enforced = bool(org.mfa_enforced)
    org_version = compliance.version_of(org)
    # Read for the audit event and the member's mail, which name the key, and for whether it
    # complies with the policy; the transaction's conditions still decide whether it is deleted.
    stored = _stored_key(org_id=org_id, key_id=key_id)
    name = stored.name if stored is not None else None
    compliant = -compliance.compliant_delta(org=org, keys=[stored]) if stored is not None else 0

    def store(standing: conditions.Standing) -> list[Session]:
        with transaction() as write:
            write.delete(
                "key",
                SecurityKey(org_id, key_id),
                condition=SecurityKey.key_id.exists() & (SecurityKey.user_id == user_id),
            )
            write.delete("claim", CredentialClaim(key_id))
            coverage.change_key_count(
                write, org_id=org_id, user_id=user_id, expected=standing, delta=-1,
                compliant_delta=compliant, compliance_version=org_version,
                condition=Member.key_count > 1 if keep_last and enforced else None,
                extra_actions=[Member.credentials[key_id].remove()] if lists_credentials else [],
                org_condition=Organization.mfa_enforced == False if keep_last and not enforced else None,  # noqa: E712
                org_label="not enforced",
            )
            overflow = _end_sessions_verified_with(write, org_id=org_id, user_id=user_id, key_ids={key_id},
                                                   sparing=caller.session.session_id)
            write.save("audit", audit.event(
                org_id=org_id, actor=caller.actor, action="key.deleted", target=key_id, user_id=user_id,
                client=caller.client, details={"by": by, "name": name},
            ))
        return overflow

    own = user_id == caller.session.user_id
    if own:
        expected, lists_credentials = conditions.standing_of(caller.member), caller.member.credentials is not None
    else:
        expected, lists_credentials = _standing_and_listing(org_id=org_id, user_id=user_id)
    end_sessions(coverage.retrying(org_id=org_id, user_id=user_id, expected=expected, compliance_version=org_version,
                                   attempt=store))
    if own:
        caller.member.key_count -= 1


def _stored_key(*, org_id: str, key_id: str) -> SecurityKey | None:
    """A key's name and what the authenticator policy looks at; None when there is no such key
    (its deletion is then refused anyway)."""
    try:
        return SecurityKey.get(org_id, key_id, consistent_read=True,
                               attributes_to_get=["name", "aaguid", "backup_eligible", "attested", "model_status"])
    except SecurityKey.DoesNotExist:
        return None


def named(keys: list[SecurityKey]) -> list[dict[str, str]]:
    """The keys an event removed all at once, by ID and name, for the audit log and the mail."""
    return [{"id": key.key_id, "name": key.name} for key in keys]


def disable_mfa(*, caller: Caller) -> None:
    """``DELETE /me/mfa``: delete all of one's keys; refused while the organization enforces MFA."""
    org_id, user_id = caller.session.org_id, caller.session.user_id
    if caller.org.mfa_enforced:
        raise LastKeyRequired("The organization enforces MFA: it cannot be disabled.")
    keys = keys_of(org_id=org_id, user_id=user_id)
    standing = replace(conditions.standing_of(caller.member), key_count=len(keys))
    org_version = compliance.version_of(caller.org)
    compliant = -compliance.compliant_delta(org=caller.org, keys=keys)

    def store() -> list[Session]:
        with transaction() as write:
            for key in keys:
                write.delete("key", key, condition=SecurityKey.key_id.exists())
                write.delete("claim", CredentialClaim(key.key_id))
            # The count condition makes a key registered meanwhile fail the whole transaction
            # rather than survive with a counter of zero.
            coverage.change_key_count(write, org_id=org_id, user_id=user_id, expected=standing, delta=-len(keys),
                                      compliant_delta=compliant, compliance_version=org_version,
                                      extra_actions=[Member.credentials.remove()],
                                      org_condition=Organization.mfa_enforced == False, org_label="not enforced")  # noqa: E712
            overflow = _end_sessions_verified_with(write, org_id=org_id, user_id=user_id,
                                                   key_ids={key.key_id for key in keys}, sparing=caller.session.session_id)
            write.save("audit", audit.event(
                org_id=org_id, actor=caller.actor, action="mfa.disabled", target=user_id, user_id=user_id,
                client=caller.client, details={"keys_deleted": len(keys), "keys": named(keys)},
            ))
        return overflow

    try:
        overflow = conditions.sent_again_on_conflict(store, org_id=org_id)
    except ConditionsFailed as refused:
        compliance.refuse_if_moved(org_id=org_id, version=org_version)
        if "not enforced" in refused.labels:
            raise LastKeyRequired("The organization enforces MFA: it cannot be disabled.") from None
        raise ConcurrentChange("Your security keys changed meanwhile; try again.") from None
    end_sessions(overflow)
    caller.member.key_count = 0


def describe(key: SecurityKey, *, policy: AuthenticatorPolicy) -> dict[str, Any]:
    """A key as the API shows it, with whether it counts under the organization's policy."""
    return {
        "id": key.key_id,
        "name": key.name,
        "created_at": clock.iso(key.created_at),
        "last_used_at": clock.iso(key.last_used_at),
        "aaguid": key.aaguid,
        "algorithm": key.algorithm,
        "transports": list(key.transports or []),
        "backup_eligible": bool(key.backup_eligible),
        "backed_up": bool(key.backed_up),
        "model": key.model,
        "model_status": key.model_status,
        "attested": bool(key.attested),
        "policy_compliant": authenticator_policy.is_compliant(policy, key),
    }



# --- Organization settings: admins and every member's keys -------------------------------------

def list_org_keys(
    *, org_id: str, limit: int, after: str | None, user_id: str | None = None,
    noncompliant_under: AuthenticatorPolicy | None = None,
) -> pagination.Page[SecurityKey]:
    """One page of the organization's security keys (or one member's), with their owners; with
    ``noncompliant_under``, only the keys that fall short of that policy."""
    if noncompliant_under is not None:
        return _noncompliant_keys(org_id=org_id, limit=limit, after=after, user_id=user_id, policy=noncompliant_under)
    if user_id is not None:
        start = {"org_id": {"S": org_id}, "key_id": {"S": after}, "user_id": {"S": user_id}} if after else None
        results = SecurityKey.by_member.query(org_id, SecurityKey.user_id == user_id, limit=limit, page_size=limit,
                                              last_evaluated_key=start, consistent_read=True)
    else:
        start = {"org_id": {"S": org_id}, "key_id": {"S": after}} if after else None
        results = SecurityKey.query(org_id, limit=limit, page_size=limit, last_evaluated_key=start, consistent_read=True)
    found = list(results)
    last = results.last_evaluated_key
    return pagination.Page(items=found, next=pagination.encode(last["key_id"]["S"]) if last else None)


def _noncompliant_keys(
    *, org_id: str, limit: int, after: str | None, user_id: str | None, policy: AuthenticatorPolicy,
) -> pagination.Page[SecurityKey]:
    # Compliance depends on the policy, so no index can hold it: read pages of keys until a page
    # of answers is full. The cursor is the last key examined, so the next page resumes there.
    found: list[SecurityKey] = []
    cursor = after
    while True:
        page = list_org_keys(org_id=org_id, limit=max(limit, 100), after=cursor, user_id=user_id)
        for key in page.items:
            if not authenticator_policy.is_compliant(policy, key):
                found.append(key)
                if len(found) == limit:
                    return pagination.Page(items=found, next=pagination.encode(key.key_id))
        if page.next is None:
            return pagination.Page(items=found, next=None)
        cursor = page.items[-1].key_id


def owners_of(*, org_id: str, found: list[SecurityKey]) -> dict[str, Member]:
    """The members who own these keys, read in one batch."""
    user_ids = sorted({key.user_id for key in found})
    return {member.user_id: member for member in Member.batch_get([(org_id, user_id) for user_id in user_ids])}


def delete_by_admin(*, caller: Caller, user_id: str, key_id: str) -> None:
    """``DELETE /org/members/{user_id}/mfa/keys/{id}``: an admin removes any member's key.

    Always allowed, even a member's last key under enforcement: the member then registers a
    new one at their next login.
    """
    key_id = check_key_id(key_id)
    if not 0 < len(user_id) <= 255:  # longer cannot be an ID token's sub; DynamoDB would refuse it as a key
        raise KeyNotFound("No such security key for this member.")
    try:
        _remove_key(caller=caller, user_id=user_id, key_id=key_id, by="admin")
    except ConditionsFailed:
        raise KeyNotFound("No such security key for this member.") from None


def _end_sessions_verified_with(
    write: LabelledWrite, *, org_id: str, user_id: str, key_ids: set[str], sparing: str,
) -> list[Session]:
    """Add to ``write`` the deletion of the member's other sessions that passed MFA with one of
    these keys, as many as fit beside the keys it deletes and the audit event the caller adds
    next; returns the rest, to end right after it."""
    verified = [
        session for session in sessions_of(org_id=org_id, user_id=user_id)
        if session.verified_key_id in key_ids and session.session_id != sparing
    ]
    # Disabling MFA with 20 keys puts 43 items in the transaction before any session.
    fitting = write.room(keeping=1)
    for session in verified[:fitting]:
        write.delete("verified session", session)
    return verified[fitting:]
