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

- A change with a grace period keeps a second figure beside each: ``spared_keys``, the member's
  keys that fall short but that the grace period spares, and ``members_spared``, the members
  without a complying key who hold such a key. The figures shown add the spared ones while the
  period runs and leave them out from its end, decided when they are read: no recount runs then.

Version 0 (an organization that never changed its policy) keeps no figures: the default policy
accepts every key, so ``members_compliant`` is the coverage counter ``members_with_key``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
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
class KeyFigures:
    """Keys that comply with the organization's policy, and keys that do not but that its grace
    period spares: a member's figures, or their change."""

    compliant: int = 0
    spared: int = 0

    def __neg__(self) -> KeyFigures:
        return KeyFigures(compliant=-self.compliant, spared=-self.spared)

    def counts_as_spared(self) -> bool:
        """A member holding no complying key, but a spared one."""
        return self.compliant <= 0 < self.spared


@dataclass(frozen=True)
class FigureChange:
    """What a key transaction changes of the member's figure and the organization's counters."""

    member_actions: Sequence[Action] = field(default_factory=tuple)
    members_compliant_delta: int = 0
    members_spared_delta: int = 0


def key_change(*, standing: Standing, version: int, compliant_delta: KeyFigures) -> FigureChange:
    """The figure change of a member standing as ``standing`` whose compliant (and spared) keys
    change by ``compliant_delta``, under the organization's ``version`` (the member's own version
    is a condition of the transaction, see ``coverage.change_key_count``)."""
    if version == 0:
        return FigureChange()
    counted = standing.compliance_version == version
    if not counted and standing.key_count > 0:
        return FigureChange()  # the running recount counts this member, after this change
    before = KeyFigures(compliant=standing.compliant_keys, spared=standing.spared_keys) if counted else KeyFigures()
    after = KeyFigures(
        compliant=max(before.compliant + compliant_delta.compliant, 0),
        spared=max(before.spared + compliant_delta.spared, 0),
    )
    return FigureChange(
        member_actions=(
            Member.compliant_keys.set(after.compliant),
            Member.spared_keys.set(after.spared),
            Member.compliance_version.set(version),
        ),
        members_compliant_delta=(after.compliant > 0) - (before.compliant > 0),
        members_spared_delta=after.counts_as_spared() - before.counts_as_spared(),
    )


def removed(*, standing: Standing, version: int) -> FigureChange:
    """The counters' change when a member standing as ``standing`` leaves the organization."""
    counted = version != 0 and standing.compliance_version == version and standing.key_count > 0
    if not counted:
        return FigureChange()
    figures = KeyFigures(compliant=standing.compliant_keys, spared=standing.spared_keys)
    return FigureChange(
        members_compliant_delta=-1 if figures.compliant > 0 else 0,
        members_spared_delta=-1 if figures.counts_as_spared() else 0,
    )


def compliant_delta(*, org: Organization, keys: Sequence[SecurityKey | authenticator_policy.KeyFacts]) -> KeyFigures:
    """How many of these keys comply with the organization's policy, and how many its grace
    period spares (none where no figures are kept)."""
    if version_of(org) == 0:
        return KeyFigures()
    return figures_of(policy=authenticator_policy.of(org), keys=keys)


def figures_of(
    *, policy: authenticator_policy.AuthenticatorPolicy, keys: Iterable[SecurityKey | authenticator_policy.KeyFacts]
) -> KeyFigures:
    """A member's figures from their keys, by the one rule of which keys count."""
    verdicts = [
        authenticator_policy.verdict(
            policy, key if isinstance(key, authenticator_policy.KeyFacts) else authenticator_policy.KeyFacts.of(key)
        )
        for key in keys
    ]
    return KeyFigures(
        compliant=sum(1 for judged in verdicts if judged.compliant),
        spared=sum(1 for judged in verdicts if judged.spared),
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
    spared = max(int(org.members_spared or 0), 0) if authenticator_policy.of(org).in_grace(clock.now()) else 0
    return Compliance(state=DONE, members_compliant=max(int(org.members_compliant or 0), 0) + spared)


def member_compliant(*, member: Member, org: Organization) -> bool | None:
    """Whether the member holds a key that complies with the policy; None while their figure is
    being recounted."""
    if int(member.key_count or 0) <= 0:
        return False
    version = version_of(org)
    if version == 0:
        return True if of(org).state == DONE else None
    if int(member.compliance_version or 0) == version:
        spared = int(member.spared_keys or 0) > 0 and authenticator_policy.of(org).in_grace(clock.now())
        return int(member.compliant_keys or 0) > 0 or spared
    return None


# --- starting a recount ---------------------------------------------------------------------------


def restart_actions(org: Organization) -> tuple[list[Action], Condition]:
    """The organization update that moves it to a new compliance version and starts its recount
    (the stream function runs it), and the condition it needs (the version as read)."""
    version = version_of(org) + 1
    return [
        Organization.compliance_version.set(version),
        Organization.members_compliant.set(0),
        Organization.members_spared.set(0),
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
