"""Where an organization's audit events are kept: spread over shards within a day, so that no
partition key takes more than a slice of an organization's sign-ins.

The rule: an event lives under the partition key ``<org>#<day>#<shard>``, where ``day`` is the UTC
date of its time and ``shard`` a number below the organization's shard count in force at that time;
its range key is its event key (its time and a random suffix), as before. A sign-in, an MFA check
and a step-up each write one event in their transaction (two write units under 1 KB), and DynamoDB
gives one partition key at most 1,000 write units a second: an organization's single key capped
it near 500 such events a second. With ``S`` shards it takes ``S`` times that (see
docs/performance.md for the count to choose).

The count is the organization's own, because reading merges every shard of a day: an organization
that signs in a few people a minute keeps one shard and reads its log with one query a day. The
operator changes it (``python -m keyward org audit-shards ORG N``); the organization item records
every count still in force within the retention period, each from the hour it starts, and the
request that writes an event already read that item — it is never written on a sign-in path.

A change takes effect from the first full hour at least :data:`CHANGE_NOTICE` away, so that a
request that read the organization before the change (a Lambda request lasts seconds) writes no
event where the new count would not look. A reader of a day queries the largest count in force at
any moment of it, so every shard an event of that day may be in is read, whichever hour a change
took effect.

Events written without the organization at hand (an admin's act, a background function's, all far
from the sign-in rate) go to shard 0, which every day has.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chalicelib.base.models import Organization

DAY_FORMAT = "%Y-%m-%d"
HOUR_FORMAT = "%Y-%m-%dT%H"
# One shard per 10 write units of headroom below 1,000 would be absurd; 100 shards take 100,000
# write units a second, ten times the largest storm keyward is sized for.
MAX_SHARDS = 100
CHANGE_NOTICE = timedelta(minutes=5)


def day_of(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def day_of_key(event_key: str) -> date | None:
    """The day of an event key (``2026-12-07T20:01:02.000003Z#...``); None when it is not one."""
    try:
        return datetime.strptime(event_key[:10], DAY_FORMAT).date()
    except ValueError:
        return None


def shard_key(org_id: str, day: date, shard: int) -> str:
    """The partition key of an organization's events of ``day`` on ``shard``."""
    return f"{org_id}#{day.strftime(DAY_FORMAT)}#{shard}"


def counts(org: Organization | None) -> dict[str, int]:
    """The organization's shard counts, each from the hour it names (``2026-12-07T21``); empty is 1 throughout."""
    if org is None or org.audit_shards is None:
        return {}
    return {hour: int(count) for hour, count in org.audit_shards.as_dict().items()}


def count_at(org: Organization | None, moment: datetime) -> int:
    """The shard count in force at ``moment``: what a writer spreads its event over."""
    hour = moment.astimezone(UTC).strftime(HOUR_FORMAT)
    started = [start for start in counts(org) if start <= hour]
    return counts(org)[max(started)] if started else 1


def count_for_day(org: Organization | None, day: date) -> int:
    """How many shards a reader of ``day`` queries: the largest count in force at any moment of it."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    changes_that_day = [count for hour, count in counts(org).items() if hour.startswith(day.strftime(DAY_FORMAT))]
    return max([count_at(org, start), *changes_that_day])


def pick(org: Organization | None, moment: datetime) -> int:
    """A shard for an event at ``moment``: random, so that a storm spreads evenly."""
    return random.randrange(count_at(org, moment))  # noqa: S311 - spread, not secrecy


def effective_from(now: datetime) -> datetime:
    """When a change of the count made ``now`` takes effect: the first full hour at least CHANGE_NOTICE away."""
    hour = (now + CHANGE_NOTICE).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return hour + timedelta(hours=1)


def changed(*, org: Organization, shards: int, now: datetime, retention: timedelta) -> dict[str, int]:
    """The organization's counts after setting ``shards`` from :func:`effective_from` ``now`` on.

    Counts superseded before the retention period began are dropped: no event they placed is kept.
    """
    start = effective_from(now).strftime(HOUR_FORMAT)
    kept = {hour: count for hour, count in counts(org).items() if hour < start}
    oldest_kept = (now - retention).astimezone(UTC).strftime(HOUR_FORMAT)
    superseded = [hour for hour in kept if hour <= oldest_kept]
    for hour in sorted(superseded)[:-1]:  # the last of them is still in force at the oldest event
        del kept[hour]
    kept[start] = shards
    return kept


def set_count(*, org_id: str, shards: int, now: datetime, retention: timedelta) -> datetime:
    """Spread the organization's events over ``shards`` from :func:`effective_from` ``now`` on (the
    operator's ``org audit-shards``); returns when that is.

    Raises:
        Organization.DoesNotExist: there is no such organization.
    """
    from pynamodb.exceptions import UpdateError

    from chalicelib.base.models import Organization
    from chalicelib.base.storage import condition_failed

    while True:
        org = Organization.get(org_id, consistent_read=True)
        # Written only if the counts are still those read: a count another operator set meanwhile
        # placed events that readers must still find, so it is kept, not overwritten.
        as_read = (
            Organization.audit_shards == org.audit_shards.as_dict()
            if org.audit_shards is not None
            else Organization.audit_shards.does_not_exist()
        )
        try:
            org.update(
                actions=[Organization.audit_shards.set(changed(org=org, shards=shards, now=now, retention=retention))],
                condition=Organization.org_id.exists() & as_read,
            )
        except UpdateError as error:
            if not condition_failed(error):
                raise
            continue
        return effective_from(now)
