"""What a transaction that changes a member's keys states about the member — their standing, as
conditions on the member item — and sending such a transaction again when DynamoDB cancelled it for
meeting another on the same items (a conflict, not a refusal). Both counters, coverage
(chalicelib/counters/coverage.py) and compliance (chalicelib/counters/compliance.py), move in such
transactions."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from pynamodb.attributes import NumberAttribute
from pynamodb.exceptions import PynamoDBException, TransactWriteError
from pynamodb.expressions.condition import Condition

from chalicelib.base.models import Member
from chalicelib.base.storage import response_code

log = logging.getLogger("keyward.coverage")


# Attempts of one transaction that keeps meeting others on the same items; with jittered
# backoff this outlasts hundreds of simultaneous writers to one organization.
MAX_ATTEMPTS = 12
_CONFLICT = "TransactionConflict"


@dataclass(frozen=True)
class Standing:
    """What a transaction that changes a member's keys states about the member (its conditions)
    and derives its counter changes from, as read."""

    key_count: int
    admin: bool
    key_changes: int
    compliant_keys: int
    compliance_version: int
    spared_keys: int = 0


def standing_of(member: Member) -> Standing:
    return Standing(
        key_count=int(member.key_count or 0),
        admin=bool(member.admin),
        key_changes=int(member.key_changes or 0),
        compliant_keys=int(member.compliant_keys or 0),
        compliance_version=int(member.compliance_version or 0),
        spared_keys=int(member.spared_keys or 0),
    )


def standing_now(*, org_id: str, user_id: str) -> Standing | None:
    """The member's standing now (None when there is no such member)."""
    try:
        return standing_of(Member.get(org_id, user_id, consistent_read=True))
    except Member.DoesNotExist:
        return None


def number_is(attribute: NumberAttribute, value: int) -> Condition:
    """``attribute == value``, where an absent attribute reads as 0 (items from before it existed)."""
    if value == 0:
        return attribute.does_not_exist() | (attribute == 0)
    return attribute == value


def _conflicted(error: Exception) -> bool:
    """A transaction DynamoDB cancelled because another one held the same item, not for a condition."""
    if isinstance(error, TransactWriteError):
        reasons = error.cancellation_reasons or []
        if any(reason is not None and reason.code == _CONFLICT for reason in reasons):
            return True
    return isinstance(error, PynamoDBException) and response_code(error) == "TransactionConflictException"


def sent_again_on_conflict[T](attempt: Callable[[], T], *, org_id: str) -> T:
    """Run ``attempt``; send it again, after a jittered pause, when DynamoDB cancelled it because
    another transaction held one of its items at that moment (a conflict, not a refusal)."""
    for number in range(MAX_ATTEMPTS):
        try:
            return attempt()
        except PynamoDBException as error:
            if not _conflicted(error) or number == MAX_ATTEMPTS - 1:
                raise
            log.info("transaction conflict on organization %s; sending again", org_id)
        time.sleep(random.uniform(0, min(1.0, 0.01 * 2**number)))
    raise AssertionError("unreachable")
