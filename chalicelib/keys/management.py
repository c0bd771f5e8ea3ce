"""A member's own security keys after registration: list, rename, delete, disable MFA, and the
last-key rule under enforcement.

Every write that removes a key changes the member's ``key_count`` in the same transaction;
conditions on that counter and on the organization's enforcement flag keep the rules true when
requests race.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace
from typing import Any

from chalicelib.access.sessions import end_sessions, sessions_of
from chalicelib.base import audit, clock
from chalicelib.base.context import Caller, SessionState
from chalicelib.base.errors import (
    ConcurrentChange,
    InvalidKeyName,
    KeyNotFound,
    LastKeyRequired,
)
from chalicelib.base.models import (
    CredentialClaim,
    Member,
    Organization,
    SecurityKey,
    Session,
)
from chalicelib.base.storage import ConditionsFailed, Item, LabelledWrite, transaction
from chalicelib.ceremony import authenticator_policy
from chalicelib.ceremony.authenticator_policy import AuthenticatorPolicy, KeyFacts
from chalicelib.ceremony.credentials import keys_in_use, keys_of, stored_key
from chalicelib.counters import compliance, conditions, coverage

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


def _standing_and_listing(*, org_id: str, user_id: str) -> tuple[conditions.Standing, bool]:
    """Another member's standing now, and whether their item lists credentials (removing from a
    list that is absent would fail)."""
    try:
        stored = Member.get(org_id, user_id, consistent_read=True)
    except Member.DoesNotExist:
        stored = Member(org_id, user_id, key_count=0)
    return conditions.standing_of(stored), stored.credentials is not None


def list_keys(*, caller: Caller) -> list[SecurityKey]:
    """``GET /me/mfa/keys``."""
    return keys_of(org_id=caller.session.org_id, user_id=caller.session.user_id)


def keys_to_replace(*, caller: Caller) -> list[dict[str, Any]] | None:
    """For ``GET /me``: while the member must replace keys the organization no longer accepts
    (their session waits to register, yet they hold keys), each key and the rules it falls short
    of; ``None`` otherwise, without reading the keys."""
    if caller.is_backup or caller.state is not SessionState.REGISTRATION_REQUIRED or caller.member.key_count == 0:
        return None
    policy = authenticator_policy.of(caller.org)
    return [
        {"id": key.key_id, "name": key.name, "shortfalls": authenticator_policy.shortfalls(policy, KeyFacts.of(key))}
        for key in list_keys(caller=caller)
    ]


def keys_spared(*, caller: Caller) -> dict[str, Any] | None:
    """For ``GET /me``: while the policy's grace period spares keys of the member's that fall short
    of it, the period's end and each such key with the rules it falls short of; ``None``
    otherwise. The keys are read only for a member the compliance figures show spared (or not yet
    recounted), so that other members' requests stay one round trip."""
    policy = authenticator_policy.of(caller.org)
    now = clock.now()
    if caller.is_backup or caller.member.key_count == 0 or not policy.in_grace(now):
        return None
    member = caller.member
    counted = int(member.compliance_version or 0) == compliance.version_of(caller.org)
    if counted and not int(member.spared_keys or 0):
        return None
    verdicts = [(key, authenticator_policy.verdict(policy, KeyFacts.of(key))) for key in list_keys(caller=caller)]
    spared = [
        {"id": key.key_id, "name": key.name, "shortfalls": judged.shortfalls}
        for key, judged in verdicts
        if judged.spared and judged.counts(now)
    ]
    if not spared:
        return None
    return {
        "until": clock.iso(policy.grace_until),
        "keeps_a_key": any(judged.compliant for _, judged in verdicts),
        "keys": spared,
    }


def rename(*, caller: Caller, key_id: str, name: object) -> SecurityKey:
    """``PATCH /me/mfa/keys/{id}``: only the name of one's own key can change."""
    name = check_name(name)
    org_id, user_id = caller.session.org_id, caller.session.user_id
    key_id = check_key_id(key_id)
    # Read first, for the answer: a read failing after the commit would report 503 "nothing was
    # changed" for a rename made. The write's condition still decides ownership.
    key = stored_key(org_id=org_id, key_id=key_id)
    if key is None:
        raise KeyNotFound("No such security key.")
    try:
        with transaction() as write:
            write.update(
                Item.KEY,
                SecurityKey(org_id, key_id),
                actions=[SecurityKey.name.set(name)],
                condition=SecurityKey.key_id.exists() & (SecurityKey.user_id == user_id),
            )
            write.save(
                Item.AUDIT,
                audit.event(
                    org_id=org_id,
                    actor=caller.actor,
                    action="key.renamed",
                    target=key_id,
                    user_id=user_id,
                    client=caller.client,
                    details={"name": name},
                ),
            )
    except ConditionsFailed:
        raise KeyNotFound("No such security key.") from None
    key.name = name
    return key


def delete(*, caller: Caller, key_id: str) -> None:
    """``DELETE /me/mfa/keys/{id}``: remove one of one's own keys.

    While the organization enforces MFA, the member's last key stays (409 LastKeyRequired), as
    :func:`remove_key` holds.
    """
    remove_key(caller=caller, user_id=caller.session.user_id, key_id=check_key_id(key_id), by="self")


def remove_key(*, caller: Caller, user_id: str, key_id: str, by: str) -> None:
    """Delete a member's key in one transaction with its credential claim, the member's key
    count, the member's other sessions that passed MFA with it, and the audit event.

    Whoever deletes it, the member (``by="self"``) or an admin (``by="admin"``), the member's last
    key stays while the organization enforces MFA: a condition on the key count when enforcement
    is on, and a condition that it is still off otherwise — so the rule holds when deletes race
    each other or an admin enforcing MFA. An admin who wants everything of a member's gone
    offboards them.

    Raises:
        KeyNotFound: the member has no such key.
        LastKeyRequired: it is the member's last key and the organization enforces MFA.
        ConcurrentChange: the organization's authenticator policy kept changing meanwhile.
    """
    own = user_id == caller.session.user_id
    org_id = caller.session.org_id
    org = caller.org
    try:
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
    except ConditionsFailed as refused:
        if Item.KEY in refused.labels:
            raise KeyNotFound("No such security key." if own else "No such security key for this member.") from None
        raise LastKeyRequired(
            "The organization enforces MFA: your last security key cannot be deleted."
            if own
            else "The organization enforces MFA: the member's last security key cannot be deleted."
        ) from None


def _remove_key_under(*, org: Organization, caller: Caller, user_id: str, key_id: str, by: str) -> None:
    """:func:`remove_key`, with the organization as read (its enforcement and compliance version)."""
    org_id = caller.session.org_id
    enforced = bool(org.mfa_enforced)
    org_version = compliance.version_of(org)
    # Read for the audit event and the member's mail, which name the key, and for whether it
    # complies with the policy; the transaction's conditions still decide whether it is deleted.
    stored = _stored_key(org_id=org_id, key_id=key_id)
    name = stored.name if stored is not None else None
    compliant = -compliance.compliant_delta(org=org, keys=[stored]) if stored is not None else compliance.KeyFigures()

    def store(standing: conditions.Standing) -> list[Session]:
        with transaction() as write:
            write.delete(
                Item.KEY,
                SecurityKey(org_id, key_id),
                condition=SecurityKey.key_id.exists() & (SecurityKey.user_id == user_id),
            )
            write.delete(Item.CLAIM, CredentialClaim(key_id))
            coverage.change_key_count(
                write,
                org_id=org_id,
                user_id=user_id,
                expected=standing,
                delta=-1,
                compliant_delta=compliant,
                compliance_version=org_version,
                condition=Member.key_count > 1 if enforced else None,
                extra_actions=[Member.credentials[key_id].remove()] if lists_credentials else [],
                org_condition=Organization.mfa_enforced == False if not enforced else None,
            )
            overflow = _end_sessions_verified_with(
                write, org_id=org_id, user_id=user_id, key_ids={key_id}, sparing=caller.session.session_id
            )
            write.save(
                Item.AUDIT,
                audit.event(
                    org_id=org_id,
                    actor=caller.actor,
                    action="key.deleted",
                    target=key_id,
                    user_id=user_id,
                    client=caller.client,
                    details={"by": by, "name": name},
                ),
            )
        return overflow

    own = user_id == caller.session.user_id
    if own:
        expected, lists_credentials = conditions.standing_of(caller.member), caller.member.credentials is not None
    else:
        expected, lists_credentials = _standing_and_listing(org_id=org_id, user_id=user_id)
    end_sessions(
        coverage.retrying(
            org_id=org_id, user_id=user_id, expected=expected, compliance_version=org_version, attempt=store
        )
    )
    if own:
        caller.member.key_count -= 1


def _stored_key(*, org_id: str, key_id: str) -> SecurityKey | None:
    """A key's name and what the authenticator policy looks at; None when there is no such key
    (its deletion is then refused anyway)."""
    try:
        return SecurityKey.get(
            org_id,
            key_id,
            consistent_read=True,
            attributes_to_get=["name", "aaguid", "backup_eligible", "attested", "model_status"],
        )
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
                write.delete(Item.KEY, key, condition=SecurityKey.key_id.exists())
                write.delete(Item.CLAIM, CredentialClaim(key.key_id))
            # The count condition makes a key registered meanwhile fail the whole transaction
            # rather than survive with a counter of zero.
            coverage.change_key_count(
                write,
                org_id=org_id,
                user_id=user_id,
                expected=standing,
                delta=-len(keys),
                compliant_delta=compliant,
                compliance_version=org_version,
                extra_actions=[Member.credentials.remove()],
                org_condition=Organization.mfa_enforced == False,
            )
            overflow = _end_sessions_verified_with(
                write,
                org_id=org_id,
                user_id=user_id,
                key_ids={key.key_id for key in keys},
                sparing=caller.session.session_id,
            )
            write.save(
                Item.AUDIT,
                audit.event(
                    org_id=org_id,
                    actor=caller.actor,
                    action="mfa.disabled",
                    target=user_id,
                    user_id=user_id,
                    client=caller.client,
                    details={"keys_deleted": len(keys), "keys": named(keys)},
                ),
            )
        return overflow

    try:
        overflow = conditions.sent_again_on_conflict(store, org_id=org_id)
    except ConditionsFailed as refused:
        compliance.refuse_if_moved(org_id=org_id, version=org_version)
        # MFA's not being enforced is checked with the organization's counters (see coverage.change_key_count).
        if Item.ORG_COUNTERS in refused.labels:
            raise LastKeyRequired("The organization enforces MFA: it cannot be disabled.") from None
        raise ConcurrentChange("Your security keys changed meanwhile; try again.") from None
    end_sessions(overflow)
    caller.member.key_count = 0


def as_shown(keys: list[SecurityKey]) -> list[SecurityKey]:
    """Keys as a listing shows them, with their last use and backup state (which their claims
    hold: one batch read for the lot)."""
    return keys_in_use(keys)


def describe(key: SecurityKey, *, policy: AuthenticatorPolicy) -> dict[str, Any]:
    """A key as the API shows it, with whether it counts under the organization's policy and, if
    not, which of its rules it falls short of — and until when it counts all the same, where the
    policy's grace period spares it."""
    judged = authenticator_policy.verdict(policy, authenticator_policy.KeyFacts.of(key))
    shortfalls = judged.shortfalls
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
        "policy_compliant": not shortfalls,
        # The rules (reason codes) the key falls short of, so that its holder knows what to replace.
        "policy_shortfalls": shortfalls,
        "counts_until": clock.iso(judged.spared_until) if judged.counts(clock.now()) and judged.spared else None,
    }


def _end_sessions_verified_with(
    write: LabelledWrite,
    *,
    org_id: str,
    user_id: str,
    key_ids: set[str],
    sparing: str,
) -> list[Session]:
    """Add to ``write`` the deletion of the member's other sessions that passed MFA with one of
    these keys, as many as fit beside the keys it deletes and the audit event the caller adds
    next; returns the rest, to end right after it."""
    verified = [
        session
        for session in sessions_of(org_id=org_id, user_id=user_id)
        if session.verified_key_id in key_ids and session.session_id != sparing
    ]
    # Disabling MFA with 20 keys puts 43 items in the transaction before any session.
    fitting = write.room(keeping=1)
    for session in verified[:fitting]:
        write.delete(Item.SESSION, session)
    return verified[fitting:]
