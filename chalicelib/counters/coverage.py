"""Coverage: how many members an organization has and how many of them hold a security key, and
the same of its admins, kept as counters on the organization; each member's coverage bucket
(none, one, many keys) and, for an admin without a key, their entry in AdminsWithoutKey.

The rule: every transaction that creates or deletes a member, changes a member's key count, or
(at login) their admin flag, states the member's standing it expects (conditions) and moves the
counters, the bucket and the admin entry with it. A member's count and flag can only change
through such a transaction, so the counters are exact whatever runs at the same time; when two
transactions meet on one organization item, DynamoDB cancels one of them (a conflict, not a
refusal) and it is sent again here, never reported to the user.
Admin pages then read one item, whatever the organization's size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from pynamodb.exceptions import PynamoDBException
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from chalicelib.base.models import Member, Organization
from chalicelib.base.storage import ConditionsFailed, Item, LabelledWrite, response_code
from chalicelib.counters import compliance
from chalicelib.counters.conditions import (
    MAX_ATTEMPTS,
    Standing,
    number_is,
    sent_again_on_conflict,
    standing_now,
)

log = logging.getLogger("keyward.coverage")


class Bucket(str, Enum):
    """How many security keys a member holds, as ``GET /org/members?mfa=`` filters them."""

    NONE = "none"
    ONE = "one"
    MANY = "many"


def bucket_of(key_count: int) -> Bucket:
    if key_count <= 0:
        return Bucket.NONE
    return Bucket.ONE if key_count == 1 else Bucket.MANY


def coverage_key(*, org_id: str, bucket: Bucket) -> str:
    """The partition of MembersByCoverage that lists one organization's members of one bucket."""
    return f"{org_id}#{bucket.value}"


@dataclass(frozen=True)
class Counters:
    """An organization's coverage, as its counters say."""

    members_total: int
    members_with_key: int
    admins_total: int = 0
    admins_with_key: int = 0

    @property
    def members_without_key(self) -> int:
        return max(self.members_total - self.members_with_key, 0)

    @property
    def admins_without_key(self) -> int:
        return max(self.admins_total - self.admins_with_key, 0)


def counters_of(org: Organization) -> Counters:
    return Counters(
        members_total=int(org.members_total or 0),
        members_with_key=int(org.members_with_key or 0),
        admins_total=int(org.admins_total or 0),
        admins_with_key=int(org.admins_with_key or 0),
    )


def _same_standing(standing: Standing) -> Condition:
    admin = (Member.admin == True) if standing.admin else ((Member.admin == False) | Member.admin.does_not_exist())
    return (
        Member.user_id.exists()
        & (Member.key_count == standing.key_count)
        & admin
        & number_is(Member.key_changes, standing.key_changes)
        & number_is(Member.compliance_version, standing.compliance_version)
    )


def add_member(write: LabelledWrite, *, org_id: str, admin: bool = False) -> None:
    """Count a member created in ``write`` (with no key yet); an admin joins the admins without a
    key (the member item sets ``admin_without_key``, see :func:`admin_without_key_for`)."""
    actions = [Organization.members_total.add(1)]
    if admin:
        actions.append(Organization.admins_total.add(1))
    write.update(Item.ORG_COUNTERS, Organization(org_id), actions=actions)


def admin_without_key_for(*, org_id: str, admin: bool, key_count: int) -> str | None:
    """The member's AdminsWithoutKey entry: their organization's ID while they are an admin without a key."""
    return org_id if admin and key_count <= 0 else None


def remove_member(write: LabelledWrite, *, org_id: str, standing: Standing, compliance_version: int) -> Condition:
    """Uncount a member deleted in ``write``, as ``standing`` says they stand; returns the
    condition the member's delete must carry for that to be true."""
    actions = [Organization.members_total.add(-1)]
    if standing.key_count > 0:
        actions.append(Organization.members_with_key.add(-1))
    if standing.admin:
        actions.append(Organization.admins_total.add(-1))
        if standing.key_count > 0:
            actions.append(Organization.admins_with_key.add(-1))
    figure = compliance.removed(standing=standing, version=compliance_version)
    if figure.members_compliant_delta:
        actions.append(Organization.members_compliant.add(figure.members_compliant_delta))
    if figure.members_spared_delta:
        actions.append(Organization.members_spared.add(figure.members_spared_delta))
    write.update(
        Item.ORG_COUNTERS,
        Organization(org_id),
        actions=actions,
        condition=compliance.version_condition(compliance_version),
    )
    return _same_standing(standing)


def change_key_count(
    write: LabelledWrite,
    *,
    org_id: str,
    user_id: str,
    expected: Standing,
    delta: int,
    compliant_delta: compliance.KeyFigures,
    compliance_version: int,
    condition: Condition | None = None,
    extra_actions: Sequence[Action] = (),
    org_condition: Condition | None = None,
) -> None:
    """Change a member's key count from ``expected.key_count`` by ``delta`` (``compliant_delta``
    of those keys comply with the organization's authenticator policy) in ``write``, with their
    bucket and, when they gain their first key or lose their last, the organization's counters;
    their compliance figure under ``compliance_version`` (the organization's, as read) moves too
    (see chalicelib/counters/compliance.py).

    The member update (``Item.MEMBER``) is conditional on the member standing as ``expected``
    says, plus ``condition``; a refusal means the member changed meanwhile (see :func:`retrying`)
    or the caller's own condition failed. The organization's operation is conditional on its
    compliance version and on ``org_condition``, a condition the caller needs: a transaction may
    touch an item only once, so it is checked here, with the counters (``Item.ORG_COUNTERS``).
    ``extra_actions`` are the caller's own changes of the member item, made in the same update.
    """
    after = expected.key_count + delta
    crossed = (expected.key_count > 0) != (after > 0)
    figure = compliance.key_change(standing=expected, version=compliance_version, compliant_delta=compliant_delta)
    member_actions = [
        Member.key_count.set(after),
        Member.coverage.set(coverage_key(org_id=org_id, bucket=bucket_of(after))),
        Member.key_changes.add(1),
        *figure.member_actions,
        *extra_actions,
    ]
    org_actions = []
    if crossed:
        org_actions.append(Organization.members_with_key.add(1 if after > 0 else -1))
        if expected.admin:
            org_actions.append(Organization.admins_with_key.add(1 if after > 0 else -1))
            member_actions.append(
                Member.admin_without_key.remove() if after > 0 else Member.admin_without_key.set(org_id)
            )
    if figure.members_compliant_delta:
        org_actions.append(Organization.members_compliant.add(figure.members_compliant_delta))
    if figure.members_spared_delta:
        org_actions.append(Organization.members_spared.add(figure.members_spared_delta))
    write.update(
        Item.MEMBER,
        Member(org_id, user_id),
        actions=member_actions,
        condition=_same_standing(expected) & (condition if condition is not None else Member.user_id.exists()),
    )
    org_condition = compliance.version_condition(compliance_version) & (
        org_condition if org_condition is not None else Organization.org_id.exists()
    )
    if org_actions:
        write.update(Item.ORG_COUNTERS, Organization(org_id), actions=org_actions, condition=org_condition)
    else:
        write.condition_check(Item.ORG_COUNTERS, Organization, org_id, condition=org_condition)


def retrying[T](
    *, org_id: str, user_id: str, expected: Standing, compliance_version: int, attempt: Callable[[Standing], T]
) -> T:
    """Run ``attempt(the member's standing)``; send it again when it meets another transaction
    (a conflict) or when the member no longer stood as expected.

    A refused ``Item.MEMBER`` condition is re-read: if the member changed, the attempt runs with their
    new standing; if not, the refusal was the caller's own condition and is raised.

    Raises:
        ConcurrentChange: the organization's compliance version (its authenticator policy, or a
            model's status) changed since the request read it: what the request decided may no
            longer hold.
        ConditionsFailed: a condition other than the member's standing failed.
    """
    for number in range(MAX_ATTEMPTS):
        try:
            return sent_again_on_conflict(lambda: attempt(expected), org_id=org_id)
        except ConditionsFailed as refused:
            if refused.labels - {Item.MEMBER}:
                compliance.refuse_if_moved(org_id=org_id, version=compliance_version)
            # Another failed condition (a used challenge, a registered credential) decides alone.
            if refused.labels != {Item.MEMBER} or number == MAX_ATTEMPTS - 1:
                raise
            now = standing_now(org_id=org_id, user_id=user_id)
            if now is None or now == expected:
                raise
            expected = now
    raise AssertionError("unreachable")


def recount(*, org_id: str) -> Counters:
    """Set an organization's counters, and every member's bucket and admin entry, from its
    members: for organizations created before the counters existed, or to repair them.

    Reads every member once (operators run it, never a request). A member whose key count
    changes while it runs gets its bucket from that change; the counters are exact when no
    member joins or gains or loses their only key meanwhile — run it again if unsure.
    """
    total = with_key = admins = admins_with_key = 0
    for member in Member.query(
        org_id,
        attributes_to_get=["org_id", "user_id", "key_count", "coverage", "admin", "admin_without_key"],
        consistent_read=True,
    ):
        count = int(member.key_count or 0)
        total += 1
        with_key += count > 0
        admins += bool(member.admin)
        admins_with_key += bool(member.admin) and count > 0
        wanted = coverage_key(org_id=org_id, bucket=bucket_of(count))
        entry = admin_without_key_for(org_id=org_id, admin=bool(member.admin), key_count=count)
        if member.coverage != wanted or member.admin_without_key != entry:
            try:
                member.update(
                    actions=[
                        Member.coverage.set(wanted),
                        Member.admin_without_key.set(entry) if entry else Member.admin_without_key.remove(),
                    ],
                    condition=Member.user_id.exists()
                    & (Member.key_count == count)
                    & (Member.admin == bool(member.admin)),
                )
            except PynamoDBException as error:
                if response_code(error) != "ConditionalCheckFailedException":
                    raise
                # Its count just changed; that change set the bucket and moved the counters.
    Organization(org_id).update(
        actions=[
            Organization.members_total.set(total),
            Organization.members_with_key.set(with_key),
            Organization.admins_total.set(admins),
            Organization.admins_with_key.set(admins_with_key),
        ],
        condition=Organization.org_id.exists(),
    )
    return Counters(
        members_total=total, members_with_key=with_key, admins_total=admins, admins_with_key=admins_with_key
    )


def organizations() -> list[str]:
    """Every organization's ID (operators only: a scan)."""
    return sorted(org.org_id for org in Organization.scan(attributes_to_get=["org_id"]))
