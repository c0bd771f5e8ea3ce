"""Compliance: how many of an organization's members hold a security key that its authenticator
policy accepts (``members_compliant``), kept as a counter, so that admin pages read one item.

The rule:

- The organization's ``compliance_version`` names the policy (and model statuses) its figures
  were counted under. Each member item keeps ``compliant_keys``, how many of their keys comply,
  with the version it was counted under; the organization's ``members_compliant`` counts the
  members whose figure, under the current version, is above zero.
- Every transaction that adds or removes a member's keys (chalicelib/counters/coverage.py) moves the
  member's figure and, when it crosses zero, the counter — conditional on the organization's
  version being the one the request read with its session. A change of version meanwhile makes
  the transaction fail and the request refused (``ConcurrentChange``), never count wrongly.
- Changing the policy, or a metadata refresh changing a model's status where the policy reads
  it, moves to a new version, sets the counter to 0 and starts a recount: the stream function
  counts every member holding keys again, page by page, resumable across invocations as the
  enforcement's session clean-up is (chalicelib/org/enforcement.py). Until it ends, ``GET /org/mfa``
  says the figure is being recounted instead of showing one.
- Meanwhile a member without keys counts as counted under any version (they hold no compliant
  key); a member with keys not counted yet under the new version is left to the recount, whose
  write is conditional on the member's ``key_changes`` and version being those it read.

Version 0 (an organization that never changed its policy) keeps no figures: the default policy
accepts every key, so ``members_compliant`` is the coverage counter ``members_with_key``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from chalicelib.base import clock
from chalicelib.base.errors import ConcurrentChange
from chalicelib.base.models import ComplianceRecount, Member, Organization, SecurityKey
from chalicelib.base.storage import ConditionsFailed, Item, transaction
from chalicelib.ceremony import authenticator_policy
from chalicelib.counters import conditions
from chalicelib.counters.conditions import Standing

log = logging.getLogger("keyward.compliance")

# The path of the recount's fields, for update actions and conditions: PynamoDB's types read
# ``Organization.compliance_recount.cursor`` as the cursor's value, not as its path.
RECOUNT_PATH: Any = Organization.compliance_recount

RECOUNTING = "recounting"
DONE = "done"
# Shown for an organization whose non-default policy was saved before compliance was counted;
# ``python -m keyward org recount`` counts it.
UNCOUNTED = "uncounted"


def version_of(org: Organization) -> int:
    return int(org.compliance_version or 0)


def version_condition(version: int) -> Condition:
    """The organization's compliance version is still ``version``."""
    return conditions.number_is(Organization.compliance_version, version)


def refuse_if_moved(*, org_id: str, version: int) -> None:
    """Name a refused key transaction's cause when it was the organization's compliance version.

    Raises:
        ConcurrentChange: the version is no longer ``version``.
    """
    try:
        now = version_of(Organization.get(org_id, consistent_read=True, attributes_to_get=["compliance_version"]))
    except Organization.DoesNotExist:
        return
    if now != version:
        raise ConcurrentChange("The organization's authenticator policy changed meanwhile; try again.")


# --- figures moved by key transactions ------------------------------------------------------------


@dataclass(frozen=True)
class FigureChange:
    """What a key transaction changes of the member's figure and the organization's counter."""

    member_actions: Sequence[Action] = field(default_factory=tuple)
    members_compliant_delta: int = 0


def key_change(*, standing: Standing, version: int, compliant_delta: int) -> FigureChange:
    """The figure change of a member standing as ``standing`` whose compliant keys change by
    ``compliant_delta``, under the organization's ``version`` (the member's own version is a
    condition of the transaction, see ``coverage.change_key_count``)."""
    if version == 0:
        return FigureChange()
    counted = standing.compliance_version == version
    if not counted and standing.key_count > 0:
        return FigureChange()  # the running recount counts this member, after this change
    before = standing.compliant_keys if counted else 0
    after = max(before + compliant_delta, 0)
    return FigureChange(
        member_actions=(Member.compliant_keys.set(after), Member.compliance_version.set(version)),
        members_compliant_delta=(after > 0) - (before > 0),
    )


def removed(*, standing: Standing, version: int) -> int:
    """The counter's change when a member standing as ``standing`` leaves the organization."""
    counted = version != 0 and standing.compliance_version == version and standing.key_count > 0
    return -1 if counted and standing.compliant_keys > 0 else 0


def compliant_delta(*, org: Organization, keys: Sequence[SecurityKey | authenticator_policy.KeyFacts]) -> int:
    """How many of these keys comply with the organization's policy (0 where no figures are kept)."""
    if version_of(org) == 0:
        return 0
    policy = authenticator_policy.of(org)
    return sum(
        1
        for key in keys
        if not authenticator_policy.shortfalls(
            policy, key if isinstance(key, authenticator_policy.KeyFacts) else authenticator_policy.KeyFacts.of(key)
        )
    )


# --- what admin pages show ------------------------------------------------------------------------


@dataclass(frozen=True)
class Compliance:
    state: str  # DONE, RECOUNTING or UNCOUNTED
    members_compliant: int | None  # None unless DONE


def of(org: Organization) -> Compliance:
    """The organization's compliance figure, from the organization item alone."""
    version = version_of(org)
    if version == 0:
        if authenticator_policy.of(org).as_dict() == authenticator_policy.AuthenticatorPolicy().as_dict():
            return Compliance(state=DONE, members_compliant=int(org.members_with_key or 0))
        return Compliance(state=UNCOUNTED, members_compliant=None)
    recount = org.compliance_recount
    if recount is not None and int(recount.version) == version and recount.state == RECOUNTING:
        return Compliance(state=RECOUNTING, members_compliant=None)
    return Compliance(state=DONE, members_compliant=max(int(org.members_compliant or 0), 0))


def member_compliant(*, member: Member, org: Organization) -> bool | None:
    """Whether the member holds a key that complies with the policy; None while their figure is
    being recounted."""
    if int(member.key_count or 0) <= 0:
        return False
    version = version_of(org)
    if version == 0:
        return True if of(org).state == DONE else None
    if int(member.compliance_version or 0) == version:
        return int(member.compliant_keys or 0) > 0
    return None


# --- starting a recount ---------------------------------------------------------------------------


def restart_actions(org: Organization) -> tuple[list[Action], Condition]:
    """The organization update that moves it to a new compliance version and starts its recount
    (the stream function runs it), and the condition it needs (the version as read)."""
    version = version_of(org) + 1
    return [
        Organization.compliance_version.set(version),
        Organization.members_compliant.set(0),
        Organization.compliance_recount.set(
            ComplianceRecount(version=version, state=RECOUNTING, started_at=clock.now(), handoffs=0)
        ),
    ], version_condition(version_of(org))


def restart(*, org_id: str) -> int:
    """Start a recount of the organization's compliance (a model's status changed, or an operator
    asks); returns the new version."""
    for _ in range(conditions.MAX_ATTEMPTS):
        org = Organization.get(org_id, consistent_read=True)
        actions, condition = restart_actions(org)
        try:
            with transaction() as write:
                write.update(Item.ORG, Organization(org_id), actions=actions, condition=condition)
            return version_of(org) + 1
        except ConditionsFailed:
            continue  # another restart meanwhile: start from the version it set
    raise ConcurrentChange("The organization's compliance version kept changing.")
