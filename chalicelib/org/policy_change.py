"""Changing an organization's authenticator policy (``PUT /org/mfa/policy``): what a new policy
would leave non-compliant, and saving it together with a restart of the compliance recount. What a
policy is and how it judges a key: chalicelib/ceremony/authenticator_policy.py."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

from chalicelib.base import audit, clock, pagination
from chalicelib.base.errors import ConcurrentChange, InvalidPolicy
from chalicelib.base.models import Member, Organization, SecurityKey
from chalicelib.base.storage import ConditionsFailed, Item, transaction
from chalicelib.ceremony import authenticator_policy
from chalicelib.ceremony.authenticator_policy import AppliesTo, AuthenticatorPolicy
from chalicelib.counters import compliance

if TYPE_CHECKING:
    from chalicelib.base.context import Caller


# Members named per page of a dry run's answer.
AFFECTED_PAGE = 20


@dataclass(frozen=True)
class FailingKey:
    """One of an affected member's keys and the rules (reason codes) it falls short of."""

    key_id: str
    name: str
    shortfalls: list[str]
    counts_until: datetime | None = None  # the grace period spares it until then


@dataclass(frozen=True)
class AffectedMember:
    """A member with keys a policy would stop counting."""

    user_id: str
    name: str
    keys: list[FailingKey]
    keeps_a_key: bool  # another of their keys still counts


@dataclass(frozen=True)
class Impact:
    """What a policy would leave non-compliant among the organization's stored keys."""

    keys_total: int
    keys_noncompliant: int
    members_with_keys: int
    members_noncompliant: int  # hold keys, none of them compliant
    members_affected: int = 0  # hold a key that would not count
    # The affected members after the cursor, in user ID order, one page of them.
    affected: list[AffectedMember] = field(default_factory=list)
    affected_next: str | None = None
    includes_you: bool = False  # some key of the caller's would stop counting
    # With a grace period: its end, and the members whose only counting keys it spares (they keep
    # passing MFA until then).
    grace_until: datetime | None = None
    members_spared: int = 0


@dataclass(frozen=True)
class PolicyChange:
    policy: AuthenticatorPolicy
    impact: Impact
    saved: bool


def impact(
    *, org_id: str, policy: AuthenticatorPolicy, you: str = "", after: str | None = None, limit: int = AFFECTED_PAGE
) -> Impact:
    """Count, over the organization's keys, what falls short of ``policy``, and name one page of
    the members it affects (those with user IDs after ``after``). The count reads every key of
    the organization (one query, paged by DynamoDB); the names, one batch read of the page."""
    keys = 0
    noncompliant = 0
    compliant_by_member: dict[str, bool] = defaultdict(bool)
    spared_by_member: dict[str, bool] = defaultdict(bool)
    failing: dict[str, list[FailingKey]] = defaultdict(list)
    attributes = ["user_id", "key_id", "name", "created_at", "aaguid", "backup_eligible", "attested", "model_status"]
    for key in SecurityKey.query(org_id, attributes_to_get=attributes, consistent_read=True):
        keys += 1
        judged = authenticator_policy.verdict(policy, authenticator_policy.KeyFacts.of(key))
        noncompliant += not judged.compliant
        compliant_by_member[key.user_id] |= judged.compliant
        spared_by_member[key.user_id] |= judged.spared
        if not judged.compliant:
            failing[key.user_id].append(
                FailingKey(
                    key_id=key.key_id, name=key.name, shortfalls=judged.shortfalls, counts_until=judged.spared_until
                )
            )
    later = sorted(user_id for user_id in failing if after is None or user_id > after)
    page, more = later[:limit], len(later) > limit
    names = (
        {member.user_id: member.name for member in Member.batch_get([(org_id, user_id) for user_id in page])}
        if page
        else {}
    )
    return Impact(
        keys_total=keys,
        keys_noncompliant=noncompliant,
        members_with_keys=len(compliant_by_member),
        members_noncompliant=sum(1 for fits in compliant_by_member.values() if not fits),
        members_affected=len(failing),
        affected=[
            AffectedMember(
                user_id=user_id,
                name=names.get(user_id, ""),
                keys=failing[user_id],
                keeps_a_key=compliant_by_member[user_id],
            )
            for user_id in page
        ],
        affected_next=pagination.encode(page[-1]) if more else None,
        includes_you=you in failing,
        grace_until=policy.grace_until,
        members_spared=sum(1 for user_id in failing if spared_by_member[user_id] and not compliant_by_member[user_id]),
    )


def change(
    *, caller: Caller, document: object, dry_run: bool, after: str | None = None, limit: int = AFFECTED_PAGE
) -> PolicyChange:
    """``PUT /org/mfa/policy``: replace the organization's policy, or (``dry_run``) only tell
    what it would leave non-compliant, naming the affected members after ``after``. The body's
    ``applies_to`` says whether the policy judges all keys or only keys registered from now on
    (older keys are then judged by the policy they were registered under); ``grace_period_hours``,
    how long keys a change to all keys stops counting keep counting. The change and its
    audit event (before and after) are one transaction, conditional on the policy not having
    changed since it was read; it moves the organization to a new compliance version, whose
    recount the stream function runs (chalicelib/counters/compliance.py).

    Raises:
        InvalidPolicy: the document is not a policy.
        InvalidGracePeriod: the grace period is not whole hours within the bounds.
        GracePeriodNotApplicable: a grace period with a change that stops counting no key.
        ConcurrentChange: another admin changed the policy meanwhile.
    """
    if not isinstance(document, dict):
        raise InvalidPolicy("The policy must be a JSON object.")
    mode = authenticator_policy.applies_to(document.get("applies_to", AppliesTo.ALL_KEYS.value))
    grace_hours = authenticator_policy.grace_hours(document.get("grace_period_hours", 0))
    new = authenticator_policy.parse(
        {name: value for name, value in document.items() if name not in ("applies_to", "grace_period_hours")}
    )
    org = caller.org
    before = authenticator_policy.of(org)
    # The same rules again change nothing, unless applied to all keys where older keys were spared.
    spares_older = before.applies_from is not None or before.grace_until is not None
    if (
        not grace_hours
        and new.as_dict() == before.as_dict()
        and (mode is AppliesTo.NEW_REGISTRATIONS or not spares_older)
    ):
        new = before
    else:
        new = authenticator_policy.successor(before=before, new=new, mode=mode, at=clock.now(), grace_hours=grace_hours)
    counted = impact(org_id=org.org_id, policy=new, you=caller.member.user_id, after=after, limit=limit)
    if dry_run or new is before:
        return PolicyChange(policy=before if dry_run else new, impact=counted, saved=False)
    saved = replace(new, version=before.version + 1)
    stored = saved.stored()
    unchanged = (
        Organization.authenticator_policy.does_not_exist()
        if org.authenticator_policy is None
        else Organization.authenticator_policy["version"] == before.version
    )
    recount, counted_as_read = compliance.restart_actions(org)
    try:
        with transaction() as write:
            write.update(
                Item.ORG,
                Organization(org.org_id),
                actions=[Organization.authenticator_policy.set(stored), *recount],
                condition=Organization.org_id.exists() & unchanged & counted_as_read,
            )
            write.save(
                Item.AUDIT,
                audit.event(
                    org_id=org.org_id,
                    actor=caller.actor,
                    action="policy.changed",
                    target=org.org_id,
                    client=caller.client,
                    details={
                        "before": before.as_dict(),
                        "after": saved.as_dict(),
                        "applies_to": saved.applies_to.value,
                        "grace_period_hours": grace_hours,
                        "grace_until": clock.iso(saved.grace_until),
                        "keys_noncompliant": counted.keys_noncompliant,
                        "members_noncompliant": counted.members_noncompliant,
                    },
                ),
            )
    except ConditionsFailed:
        raise ConcurrentChange("The authenticator policy changed meanwhile; reload it and try again.") from None
    return PolicyChange(policy=saved, impact=counted, saved=True)


def describe_impact(counted: Impact) -> dict[str, object]:
    return {
        "keys_total": counted.keys_total,
        "keys_noncompliant": counted.keys_noncompliant,
        "members_with_keys": counted.members_with_keys,
        "members_noncompliant": counted.members_noncompliant,
        "members_affected": counted.members_affected,
        "grace_until": clock.iso(counted.grace_until),
        "members_spared": counted.members_spared,
        "affected": [
            {
                "user_id": member.user_id,
                "name": member.name,
                "keeps_a_key": member.keeps_a_key,
                "keys": [
                    {
                        "id": key.key_id,
                        "name": key.name,
                        "shortfalls": key.shortfalls,
                        "counts_until": clock.iso(key.counts_until),
                    }
                    for key in member.keys
                ],
            }
            for member in counted.affected
        ],
        "affected_next": counted.affected_next,
        "includes_you": counted.includes_you,
    }
