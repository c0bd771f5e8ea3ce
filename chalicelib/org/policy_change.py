"""Changing an organization's authenticator policy (``PUT /org/mfa/policy``): what a new policy
would leave non-compliant, and saving it together with a restart of the compliance recount. What a
policy is and how it judges a key: chalicelib/ceremony/authenticator_policy.py."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from chalicelib.base import audit
from chalicelib.base.errors import ConcurrentChange
from chalicelib.base.models import Organization, SecurityKey
from chalicelib.base.storage import ConditionsFailed, Item, transaction
from chalicelib.ceremony import authenticator_policy
from chalicelib.ceremony.authenticator_policy import AuthenticatorPolicy
from chalicelib.counters import compliance

if TYPE_CHECKING:
    from chalicelib.base.context import Caller


@dataclass(frozen=True)
class Impact:
    """What a policy would leave non-compliant among the organization's stored keys."""

    keys_total: int
    keys_noncompliant: int
    members_with_keys: int
    members_noncompliant: int  # hold keys, none of them compliant


@dataclass(frozen=True)
class PolicyChange:
    policy: AuthenticatorPolicy
    impact: Impact
    saved: bool


def impact(*, org_id: str, policy: AuthenticatorPolicy) -> Impact:
    """Count, over the organization's keys, what falls short of ``policy``."""
    keys = 0
    noncompliant = 0
    compliant_by_member: dict[str, bool] = defaultdict(bool)
    attributes = ["user_id", "aaguid", "backup_eligible", "attested", "model_status"]
    for key in SecurityKey.query(org_id, attributes_to_get=attributes, consistent_read=True):
        keys += 1
        fits = authenticator_policy.is_compliant(policy, key)
        noncompliant += not fits
        compliant_by_member[key.user_id] |= fits
    return Impact(
        keys_total=keys,
        keys_noncompliant=noncompliant,
        members_with_keys=len(compliant_by_member),
        members_noncompliant=sum(1 for fits in compliant_by_member.values() if not fits),
    )


def change(*, caller: Caller, document: object, dry_run: bool) -> PolicyChange:
    """``PUT /org/mfa/policy``: replace the organization's policy, or (``dry_run``) only tell
    what it would leave non-compliant. The change and its audit event (before and after) are
    one transaction, conditional on the policy not having changed since it was read; it moves the
    organization to a new compliance version, whose recount the stream function runs
    (chalicelib/counters/compliance.py).

    Raises:
        InvalidPolicy: the document is not a policy.
        ConcurrentChange: another admin changed the policy meanwhile.
    """
    new = authenticator_policy.parse(document)
    org = caller.org
    before = authenticator_policy.of(org)
    counted = impact(org_id=org.org_id, policy=new)
    if dry_run or new.as_dict() == before.as_dict():
        return PolicyChange(policy=before if dry_run else new, impact=counted, saved=False)
    saved = replace(new, version=before.version + 1)
    stored = {**saved.as_dict(), "version": saved.version}
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
                        "keys_noncompliant": counted.keys_noncompliant,
                        "members_noncompliant": counted.members_noncompliant,
                    },
                ),
            )
    except ConditionsFailed:
        raise ConcurrentChange("The authenticator policy changed meanwhile; reload it and try again.") from None
    return PolicyChange(policy=saved, impact=counted, saved=True)


def describe_impact(counted: Impact) -> dict[str, int]:
    return {
        "keys_total": counted.keys_total,
        "keys_noncompliant": counted.keys_noncompliant,
        "members_with_keys": counted.members_with_keys,
        "members_noncompliant": counted.members_noncompliant,
    }
