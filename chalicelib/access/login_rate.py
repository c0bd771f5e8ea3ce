"""The organization's login rate: at most ``limit`` sessions start in one organization in any one
second, so that one organization's login storm is answered 429 by keyward before DynamoDB
throttles that organization's partitions, and never throttles another organization's.

The count is a conditional ``ADD`` in the transaction that starts the session (no round trip of
its own): on one of ``shards`` items of the throttles table for this organization and second,
chosen at random, each admitting ``ceil(limit / shards)``. A full shard cancels the transaction,
so a refused login writes nothing. Shards keep each item's writes far below DynamoDB's 1,000 write
units a second per partition however high an organization's limit (docs/operations.md has the
arithmetic); the price is that a shard can fill while others have room, so an organization near
its limit sees the odd refusal a little before it reaches it.

The limit is the organization's own ``login_rate`` where the operator set one
(``python -m keyward org login-rate``), else the deployment's ``KEYWARD_ORG_LOGIN_RATE``; 0 is no
limit. The organization item is read with every login already, so the limit costs no read.
"""

from __future__ import annotations

import math
import secrets
from datetime import datetime, timedelta

from pynamodb.exceptions import UpdateError

from chalicelib.base.config import settings
from chalicelib.base.errors import OrganizationRateLimited
from chalicelib.base.models import Organization, Throttle
from chalicelib.base.storage import Item, LabelledWrite, condition_failed

# Logins one counter item admits in its second: 25 transactional writes of 2 write units each,
# 50 of a partition's 1,000. A storm of refused attempts writes to the shards as well, so the
# items stay below DynamoDB's limit up to twenty times an organization's limit; and fewer writes
# per item make it less often that two logins' transactions meet on one item at once.
LOGINS_PER_SHARD = 25
# The items outlive their second only to be tidied up by DynamoDB's TTL.
_COUNTER_LIFETIME = timedelta(minutes=1)
# A refused login may try again in the next second, whose counters are empty.
RETRY_AFTER_SECONDS = 1


def limit_of(org: Organization) -> int:
    """Logins a second ``org`` may start; 0 for no limit."""
    if org.login_rate is not None:
        return int(org.login_rate)
    return settings().org_login_rate


def shards_for(limit: int) -> int:
    """How many counter items share a second's logins under ``limit``."""
    return max(1, math.ceil(limit / LOGINS_PER_SHARD))


def counter_subject(*, org_id: str, second: int, shard: int) -> str:
    return f"logins#{org_id}#{second}#{shard}"


def count_login(write: LabelledWrite, *, org: Organization, at: datetime) -> None:
    """Add the count of a login at ``at`` to ``write`` (labelled :attr:`Item.LOGIN_RATE`); its
    condition fails, and so the whole transaction, when the shard it drew is full. Nothing is
    added where the organization has no limit."""
    limit = limit_of(org)
    if limit == 0:
        return
    shards = shards_for(limit)
    second = int(at.timestamp())
    counter = Throttle(counter_subject(org_id=org.org_id, second=second, shard=secrets.randbelow(shards)))
    write.update(
        Item.LOGIN_RATE,
        counter,
        actions=[
            Throttle.logins.add(1),
            Throttle.ttl.set(datetime.fromtimestamp(second, at.tzinfo) + _COUNTER_LIFETIME),
        ],
        condition=Throttle.logins.does_not_exist() | (Throttle.logins < math.ceil(limit / shards)),
    )


def refusal(org: Organization) -> OrganizationRateLimited:
    return OrganizationRateLimited(
        f"The organization {org.org_id} has started {limit_of(org)} sessions this second, as many as it may; "
        f"try again in {RETRY_AFTER_SECONDS} second.",
        retry_after=RETRY_AFTER_SECONDS,
    )


def set_limit(*, org_id: str, rate: int | None) -> None:
    """The operator's limit for one organization: ``rate`` logins a second (0: none), or the
    deployment's default where ``rate`` is None.

    Raises:
        Organization.DoesNotExist: there is no such organization.
    """
    if rate is not None and rate < 0:
        raise ValueError(f"a login rate is 0 or more, not {rate}")
    action = Organization.login_rate.remove() if rate is None else Organization.login_rate.set(rate)
    try:
        Organization(org_id).update(actions=[action], condition=Organization.org_id.exists())
    except UpdateError as error:
        if condition_failed(error):
            raise Organization.DoesNotExist(f"no organization {org_id!r}") from None
        raise
