"""Compliance: how many of an organization's members hold a security key that its authenticator
policy accepts (``members_compliant``), kept as a counter, so that admin pages read one item.

The rule:

- The organization's ``compliance_version`` names the policy (and model statuses) its figures
  were counted under. Each member item keeps ``compliant_keys``, how many of their keys comply,
  with the version it was counted under; the organization's ``members_compliant`` counts the
  members whose figure, under the current version, is above zero.
- Every transaction that adds or removes a member's keys (chalicelib/coverage.py) moves the
  member's figure and, when it crosses zero, the counter — conditional on the organization's
  version being the one the request read with its session. A change of version meanwhile makes
  the transaction fail and the request refused (``ConcurrentChange``), never count wrongly.
- Changing the policy, or a metadata refresh changing a model's status where the policy reads
  it, moves to a new version, sets the counter to 0 and starts a recount: the stream function
  counts every member holding keys again, page by page, resumable across invocations as the
  enforcement's session clean-up is (chalicelib/enforcement.py). Until it ends, ``GET /org/mfa``
  says the figure is being recounted instead of showing one.
- Meanwhile a member without keys counts as counted under any version (they hold no compliant
  key); a member with keys not counted yet under the new version is left to the recount, whose
  write is conditional on the member's ``key_changes`` and version being those it read.

Version 0 (an organization that never changed its policy) keeps no figures: the default policy
accepts every key, so ``members_compliant`` is the coverage counter ``members_with_key``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from chalicelib import authenticator_policy, clock, coverage
from chalicelib.config import settings
from chalicelib.coverage import Standing
from chalicelib.errors import ConcurrentChange
from chalicelib.models import ComplianceRecount, Member, Organization, SecurityKey
from chalicelib.storage import ConditionsFailed, transaction

if TYPE_CHECKING:
    from chalicelib.enforcement import Deadline

log = logging.getLogger("keyward.compliance")

# The path of the recount's fields, for update actions and conditions: PynamoDB's types read
# ``Organization.compliance_recount.cursor`` as the cursor's value, not as its path.
_RECOUNT: Any = Organization.compliance_recount

RECOUNTING = "recounting"
DONE = "done"
# Shown for an organization whose non-default policy was saved before compliance was counted;
# ``python -m keyward org recount`` counts it.
UNCOUNTED = "uncounted"
# Members examined per query page; progress is saved after each page.
PAGE_SIZE = 200


def version_of(org: Organization) -> int:
    return int(org.compliance_version or 0)


def version_condition(version: int) -> Condition:
    """The organization's compliance version is still ``version``."""
    return coverage.number_is(Organization.compliance_version, version)


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
    return sum(1 for key in keys if not authenticator_policy.shortfalls(
        policy, key if isinstance(key, authenticator_policy.KeyFacts) else authenticator_policy.KeyFacts.of(key)))


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
        Organization.compliance_recount.set(ComplianceRecount(version=version, state=RECOUNTING,
                                                              started_at=clock.now(), handoffs=0)),
    ], version_condition(version_of(org))


def restart(*, org_id: str) -> int:
    """Start a recount of the organization's compliance (a model's status changed, or an operator
    asks); returns the new version."""
    for _ in range(coverage.MAX_ATTEMPTS):
        org = Organization.get(org_id, consistent_read=True)
        actions, condition = restart_actions(org)
        try:
            with transaction() as write:
                write.update("org", Organization(org_id), actions=actions, condition=condition)
            return version_of(org) + 1
        except ConditionsFailed:
            continue  # another restart meanwhile: start from the version it set
    raise ConcurrentChange("The organization's compliance version kept changing.")


# --- the recount, in the stream function ----------------------------------------------------------

def process_change(*, old: Mapping[str, Any] | None, new: Mapping[str, Any], deadline: Deadline) -> None:
    """One organizations stream record: a recount that started, or was handed over, goes on; a
    policy changed outside the API (an operator in the AWS console), which moved no version,
    starts one."""
    if old is not None and old.get("authenticator_policy") != new.get("authenticator_policy") \
            and old.get("compliance_version") == new.get("compliance_version"):
        log.info("organization %s: policy changed outside the API; recounting", new["org_id"]["S"])
        restart(org_id=new["org_id"]["S"])  # its own stream record runs the recount
        return
    before, after = _recount_of(old), _recount_of(new)
    if after is None or after.get("state", {}).get("S") != RECOUNTING:
        return
    if before is not None and _number(before, "version") == _number(after, "version") \
            and _number(before, "handoffs") == _number(after, "handoffs"):
        return
    continue_recount(org_id=new["org_id"]["S"], deadline=deadline, handoffs=_number(after, "handoffs"))


def _recount_of(image: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    value = (image or {}).get("compliance_recount")
    return value.get("M") if value else None


def _number(recount: Mapping[str, Any], name: str) -> int:
    return int(recount.get(name, {}).get("N", 0))


def continue_recount(*, org_id: str, deadline: Deadline, handoffs: int | None = None) -> None:
    """Count the organization's members under its current version, from where the last
    invocation stopped. ``handoffs`` is the continuation a stream record asks for; a record of an
    older one is stale."""
    org = Organization.get(org_id, consistent_read=True)
    recount = org.compliance_recount
    version = version_of(org)
    if recount is None or recount.state != RECOUNTING or int(recount.version) != version:
        return
    if handoffs is not None and int(recount.handoffs or 0) != handoffs:
        return
    policy = authenticator_policy.of(org)
    reserve = settings().invalidation_reserve_seconds
    cursor: str | None = recount.cursor
    while True:
        if deadline.seconds_left() < reserve:
            _save_progress(org_id=org_id, recount=recount, cursor=cursor, handoff=True)
            return
        start = {"org_id": {"S": org_id}, "user_id": {"S": cursor}} if cursor else None
        results = Member.query(org_id, consistent_read=True, page_size=PAGE_SIZE, last_evaluated_key=start)
        page = next(results.page_iter)
        for item in page.get("Items", []):
            member = Member.from_raw_data(item)
            if not _count(member=member, version=version, policy=policy):
                log.info("organization %s: a newer compliance version took over the recount", org_id)
                return
        last = page.get("LastEvaluatedKey")
        cursor = last["user_id"]["S"] if last else None
        if cursor is None:
            _finish(org_id=org_id, recount=recount)
            return
        if not _save_progress(org_id=org_id, recount=recount, cursor=cursor, handoff=False):
            return


def _count(*, member: Member, version: int, policy: authenticator_policy.AuthenticatorPolicy) -> bool:
    """Count one member under ``version``; False when the organization moved past it."""
    for _ in range(coverage.MAX_ATTEMPTS):
        standing = coverage.standing_of(member)
        if standing.key_count == 0 or standing.compliance_version == version:
            return True
        held = SecurityKey.by_member.query(member.org_id, SecurityKey.user_id == member.user_id, consistent_read=True)
        compliant = sum(1 for key in held if authenticator_policy.is_compliant(policy, key))

        def write_figure() -> None:
            with transaction() as write:
                write.update(
                    "member", Member(member.org_id, member.user_id),
                    actions=[Member.compliant_keys.set(compliant), Member.compliance_version.set(version)],
                    # The keys just read are still the member's: no key transaction came between.
                    condition=Member.user_id.exists() & coverage.number_is(Member.key_changes, standing.key_changes)
                    & coverage.number_is(Member.compliance_version, standing.compliance_version),
                )
                if compliant:
                    write.update("org", Organization(member.org_id), actions=[Organization.members_compliant.add(1)],
                                 condition=version_condition(version))
                else:
                    write.condition_check("org", Organization, member.org_id, condition=version_condition(version))

        try:
            coverage.sent_again_on_conflict(write_figure, org_id=member.org_id)
            return True
        except ConditionsFailed as refused:
            if "org" in refused.labels:
                return False
        # Read as the page was (a query), the one read the stream function's role grants on members.
        again = list(Member.query(member.org_id, Member.user_id == member.user_id, consistent_read=True))
        if not again:
            return True  # offboarded meanwhile: nothing to count
        member = again[0]
    raise ConcurrentChange(f"member {member.user_id}'s keys kept changing during the recount")


def _progress_condition(recount: ComplianceRecount) -> Condition:
    return version_condition(int(recount.version)) & (_RECOUNT.handoffs == int(recount.handoffs or 0))


def _save_progress(*, org_id: str, recount: ComplianceRecount, cursor: str | None, handoff: bool) -> bool:
    """Record how far the recount got; False if a newer version or invocation took over."""
    actions = [_RECOUNT.cursor.set(cursor) if cursor else _RECOUNT.cursor.remove()]
    if handoff:
        actions.append(_RECOUNT.handoffs.set(int(recount.handoffs or 0) + 1))
    try:
        with transaction() as write:
            write.update("org", Organization(org_id), actions=actions, condition=_progress_condition(recount))
    except ConditionsFailed:
        return False
    return True


def _finish(*, org_id: str, recount: ComplianceRecount) -> None:
    try:
        with transaction() as write:
            write.update("org", Organization(org_id), actions=[
                _RECOUNT.state.set(DONE),
                _RECOUNT.finished_at.set(clock.now()),
                _RECOUNT.cursor.remove(),
            ], condition=_progress_condition(recount))
    except ConditionsFailed:
        return
    log.info("organization %s: compliance recounted under version %d", org_id, int(recount.version))
