"""Coverage: how many members an organization has and how many of them hold a security key,
kept as counters on the organization, and each member's coverage bucket (none, one, many keys).

The rule: every transaction that creates or deletes a member, or changes a member's key count,
states the count it expects (a condition) and moves the counters and the bucket with it. A
member's count can only change through such a transaction, so the counters are exact whatever
runs at the same time; when two transactions meet on one organization item, DynamoDB cancels
one of them (a conflict, not a refusal) and it is sent again here, never reported to the user.
Admin pages then read one item, whatever the organization's size.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from enum import Enum
from typing import Callable, Sequence, TypeVar

from pynamodb.exceptions import PynamoDBException, TransactWriteError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from chalicelib.models import Member, Organization
from chalicelib.storage import ConditionsFailed, LabelledWrite, response_code

log = logging.getLogger("keyward.coverage")

T = TypeVar("T")

# Attempts of one transaction that keeps meeting others on the same items; with jittered
# backoff this outlasts hundreds of simultaneous writers to one organization.
MAX_ATTEMPTS = 12
_CONFLICT = "TransactionConflict"


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

    @property
    def members_without_key(self) -> int:
        return max(self.members_total - self.members_with_key, 0)


def counters_of(org: Organization) -> Counters:
    return Counters(members_total=int(org.members_total or 0), members_with_key=int(org.members_with_key or 0))


def add_member(write: LabelledWrite, *, org_id: str) -> None:
    """Count a member created in ``write`` (with no key yet)."""
    write.update("org counters", Organization(org_id), actions=[Organization.members_total.add(1)])


def remove_member(write: LabelledWrite, *, org_id: str, key_count: int) -> None:
    """Uncount a member deleted in ``write``, who held ``key_count`` keys (a condition of that delete)."""
    actions = [Organization.members_total.add(-1)]
    if key_count > 0:
        actions.append(Organization.members_with_key.add(-1))
    write.update("org counters", Organization(org_id), actions=actions)


def change_key_count(
    write: LabelledWrite, *, org_id: str, user_id: str, expected: int, delta: int, condition: Condition | None = None,
    extra_actions: Sequence[Action] = (), org_condition: Condition | None = None, org_label: str = "org counters",
) -> None:
    """Change a member's key count from ``expected`` by ``delta`` in ``write``, with their bucket
    and, when they gain their first key or lose their last, the organization's counter.

    The member update (label ``member``) is conditional on the count being ``expected``, plus
    ``condition``; a refusal means the count changed meanwhile (see :func:`retrying`) or the
    caller's own condition failed. ``org_condition`` is a condition on the organization the
    caller needs: a transaction may touch an item only once, so it is checked here, with the
    counter when that changes (labelled ``org_label``). ``extra_actions`` are the caller's own
    changes of the member item, made in the same update.
    """
    after = expected + delta
    write.update(
        "member",
        Member(org_id, user_id),
        actions=[Member.key_count.set(after), Member.coverage.set(coverage_key(org_id=org_id, bucket=bucket_of(after))),
                 *extra_actions],
        condition=Member.user_id.exists() & (Member.key_count == expected) & (condition if condition is not None else Member.user_id.exists()),
    )
    if (expected > 0) != (after > 0):
        write.update(
            org_label, Organization(org_id), actions=[Organization.members_with_key.add(1 if after > 0 else -1)],
            condition=org_condition,
        )
    elif org_condition is not None:
        write.condition_check(org_label, Organization, org_id, condition=org_condition)


def key_count_of(*, org_id: str, user_id: str) -> int:
    """The member's key count now (0 when there is no such member)."""
    try:
        return int(Member.get(org_id, user_id, consistent_read=True, attributes_to_get=["key_count"]).key_count or 0)
    except Member.DoesNotExist:
        return 0


def _conflicted(error: Exception) -> bool:
    """A transaction DynamoDB cancelled because another one held the same item, not for a condition."""
    if isinstance(error, TransactWriteError):
        reasons = error.cancellation_reasons or []
        if any(reason is not None and reason.code == _CONFLICT for reason in reasons):
            return True
    return isinstance(error, PynamoDBException) and response_code(error) == "TransactionConflictException"


def sent_again_on_conflict(attempt: Callable[[], T], *, org_id: str) -> T:
    """Run ``attempt``; send it again, after a jittered pause, when DynamoDB cancelled it because
    another transaction held one of its items at that moment (a conflict, not a refusal)."""
    for number in range(MAX_ATTEMPTS):
        try:
            return attempt()
        except PynamoDBException as error:
            if not _conflicted(error) or number == MAX_ATTEMPTS - 1:
                raise
            log.info("transaction conflict on organization %s; sending again", org_id)
        time.sleep(random.uniform(0, min(1.0, 0.01 * 2 ** number)))
    raise AssertionError("unreachable")


def retrying(*, org_id: str, user_id: str, expected: int, attempt: Callable[[int], T]) -> T:
    """Run ``attempt(expected key count)``; send it again when it meets another transaction
    (a conflict) or when the member's key count was not the one expected.

    A refused ``member`` condition is re-read: if the count moved, the attempt runs with the new
    count; if it did not, the refusal was the caller's own condition and is raised.

    Raises:
        ConditionsFailed: a condition other than the expected count failed.
    """
    for number in range(MAX_ATTEMPTS):
        try:
            return sent_again_on_conflict(lambda: attempt(expected), org_id=org_id)
        except ConditionsFailed as refused:
            # Another failed condition (a used challenge, a registered credential) decides alone.
            if refused.labels != {"member"} or number == MAX_ATTEMPTS - 1:
                raise
            now = key_count_of(org_id=org_id, user_id=user_id)
            if now == expected:
                raise
            expected = now
    raise AssertionError("unreachable")


def recount(*, org_id: str) -> Counters:
    """Set an organization's counters, and every member's bucket, from its members: for
    organizations created before the counters existed, or to repair them.

    Reads every member once (operators run it, never a request). A member whose key count
    changes while it runs gets its bucket from that change; the counters are exact when no
    member joins or gains or loses their only key meanwhile — run it again if unsure.
    """
    total = with_key = 0
    for member in Member.query(org_id, attributes_to_get=["org_id", "user_id", "key_count", "coverage"], consistent_read=True):
        count = int(member.key_count or 0)
        total += 1
        with_key += count > 0
        wanted = coverage_key(org_id=org_id, bucket=bucket_of(count))
        if member.coverage != wanted:
            try:
                member.update(actions=[Member.coverage.set(wanted)],
                              condition=Member.user_id.exists() & (Member.key_count == count))
            except PynamoDBException as error:
                if response_code(error) != "ConditionalCheckFailedException":
                    raise
                # Its count just changed; that change set the bucket and moved the counters.
    Organization(org_id).update(
        actions=[Organization.members_total.set(total), Organization.members_with_key.set(with_key)],
        condition=Organization.org_id.exists(),
    )
    return Counters(members_total=total, members_with_key=with_key)


def organizations() -> list[str]:
    """Every organization's ID (operators only: a scan)."""
    return sorted(org.org_id for org in Organization.scan(attributes_to_get=["org_id"]))
