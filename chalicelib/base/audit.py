"""The audit log: who did what to whom, when, and from where.

Events of an action that writes are saved in the same transaction as the action, so an action
that fails is never logged as done and a logged action cannot be missing its event. Refusals
(a failed MFA check, a wrong backup secret) are logged on their own.
"""

from __future__ import annotations

import heapq
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any

from chalicelib.base import audit_shards, clock
from chalicelib.base.config import settings
from chalicelib.base.deferred import deferred
from chalicelib.base.errors import InvalidCursor
from chalicelib.base.models import AuditEvent, Organization

# Only reading the log pages through it: writing events, which most requests do, does not need it.
if TYPE_CHECKING:
    from chalicelib.base import pagination
else:
    pagination = deferred("chalicelib.base.pagination")

if TYPE_CHECKING:
    from chalicelib.base.pagination import Page

BACKUP_USER_PREFIX = "backup:"
KEY_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# An NDJSON export answers with at most this many events; its cursor continues from there.
EXPORT_PAGE = 5000
# How far ahead of the reader's clock an event may be stamped (another function's clock).
CLOCK_SKEW = timedelta(minutes=5)


class ActorKind(str, Enum):
    """What kind of actor a name in the log is. An IdP may name a user anything, ``operator`` or
    ``keyward`` included, so the name alone never says whether a member, backup credentials, an
    operator or keyward itself acted."""

    MEMBER = "member"
    BACKUP_CREDENTIALS = "backup_credentials"
    OPERATOR = "operator"
    SYSTEM = "system"


@dataclass(frozen=True)
class Actor:
    """Who acted: their kind, and the name the log shows."""

    kind: ActorKind
    name: str


# Whoever changed an organization outside the API (the AWS console, say).
OPERATOR = Actor(kind=ActorKind.OPERATOR, name="operator")
# keyward acting on its own, in a background function: disabling a webhook that kept failing,
# flagging keys whose model the metadata service newly reports compromised.
SYSTEM = Actor(kind=ActorKind.SYSTEM, name="keyward")


def member_actor(user_id: str) -> Actor:
    return Actor(kind=ActorKind.MEMBER, name=user_id)


def backup_actor(key_id: str) -> Actor:
    return Actor(kind=ActorKind.BACKUP_CREDENTIALS, name=f"backup credentials {key_id}")


@dataclass(frozen=True)
class Client:
    """Where a request came from, recorded with the sessions it starts and the events it causes."""

    source_ip: str | None = None
    user_agent: str | None = None


# What is recorded when the caller is not an HTTP request (a test, a script): nothing known.
UNKNOWN_CLIENT = Client()


def actor_of(user_id: str) -> Actor:
    """The actor behind a session's user ID: a member, or the backup credentials they used."""
    if user_id.startswith(BACKUP_USER_PREFIX):
        return backup_actor(user_id[len(BACKUP_USER_PREFIX) :])
    return member_actor(user_id)


def event(
    *,
    org_id: str,
    actor: Actor | str,
    action: str,
    target: str | None = None,
    user_id: str | None = None,
    client: Client | None = None,
    details: dict[str, Any] | None = None,
    spread_over: Organization | None = None,
) -> AuditEvent:
    """An audit event, not yet saved: save it on its own or add it to the action's transaction.

    ``actor`` is an :class:`Actor` (``caller.actor``, :data:`OPERATOR`); a plain string is a
    member's user ID. ``spread_over``: the organization as the request read it, whose shard count
    the event is spread over — what every path an organization's sign-ins take passes; without it
    the event goes to shard 0 (chalicelib/base/audit_shards.py).
    """
    if isinstance(actor, str):
        actor = member_actor(actor)
    at = clock.now()
    client = client or Client()
    shard = audit_shards.pick(spread_over, at) if spread_over is not None else 0
    return AuditEvent(
        audit_shards.shard_key(org_id, audit_shards.day_of(at), shard),
        f"{at.strftime(KEY_TIME_FORMAT)}#{secrets.token_hex(4)}",
        org_id=org_id,
        at=at,
        actor=actor.name,
        actor_kind=actor.kind.value,
        action=action,
        target=target,
        user_id=user_id,
        source_ip=client.source_ip,
        user_agent=(client.user_agent or "")[:512] or None,
        details=details or None,
        ttl=at + timedelta(days=settings().audit_retention_days),
    )


def from_stream(image: dict[str, Any]) -> AuditEvent:
    """An event from a stream record's new image: of this table, or of the table from before
    events were spread (LegacyAuditEvent), which has no shard key — it is given the one
    `migrate audit` copies it to."""
    entry = AuditEvent.from_raw_data(image)
    if "shard_key" not in image:
        entry.shard_key = moved_to(entry.org_id, entry.event_key)
    return entry


def moved_to(org_id: str, event_key: str) -> str:
    """Where `migrate audit` copies an event of the table from before events were spread: shard 0
    of its day, which every day has."""
    day = audit_shards.day_of_key(event_key)
    if day is None:
        raise ValueError(f"not an event key: {event_key!r}")
    return audit_shards.shard_key(org_id, day, 0)


def add_details(entry: AuditEvent, **details: Any) -> None:
    """Add what became known after the event was made (the session a login started, say)."""
    known = entry.details.as_dict() if entry.details is not None else {}
    entry.details = {**known, **details}


def record(**fields: Any) -> None:
    """Save an event that belongs to no transaction (a refusal, a login)."""
    event(**fields).save()


def list_events(
    *,
    org: Organization,
    limit: int,
    after: str | None,
    action: str | None = None,
    user_id: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    oldest_first: bool = False,
) -> Page[AuditEvent]:
    """One page of the organization's events, newest first (or oldest first), optionally of one
    action, about one member (``user_id``), by one actor (``actor``, the name the log shows) and
    within ``since`` (inclusive) and ``until`` (exclusive).

    The log is read a day at a time, from the newest (or oldest) day the range, the retention period
    and the organization's creation allow, merging the queries of the day's shards by event key: every
    event of a day is in one of them, and event keys sort by time and never repeat, so the merge
    is the log's order and the cursor (the last event key returned) splits it with no duplicate and
    no gap. The filters are DynamoDB's filter on each range read, which goes on reading until it
    holds ``limit`` matches or the range ends: a page is short only at the end (and may then be
    empty). docs/api.md has what a page costs.

    Raises:
        InvalidCursor: ``after`` is not an event key.
    """
    if after is not None and audit_shards.day_of_key(after) is None:
        raise InvalidCursor("'next' is not a cursor this API returned.")
    condition = None
    for wanted in (
        AuditEvent.action == action if action else None,
        AuditEvent.user_id == user_id if user_id else None,
        AuditEvent.actor == actor if actor else None,
    ):
        if wanted is not None:
            condition = wanted if condition is None else condition & wanted
    low = since.astimezone(UTC).strftime(KEY_TIME_FORMAT) if since else None
    # "...Z" sorts before every "...Z#suffix" of the same moment, so an event at `until` is left out.
    high = until.astimezone(UTC).strftime(KEY_TIME_FORMAT) if until else None
    if after is not None:
        if oldest_first:
            low = max(low, after) if low else after
        else:
            high = min(high, after) if high else after
    found: list[AuditEvent] = []
    for entry in events(org=org, low=low, high=high, condition=condition, oldest_first=oldest_first, page_size=limit):
        if entry.event_key == after:
            continue  # the bound is inclusive where DynamoDB has no exclusive one
        found.append(entry)
        if len(found) == limit:
            return pagination.Page(items=found, next=pagination.encode(entry.event_key))
    return pagination.Page(items=found, next=None)


def events(
    *,
    org: Organization,
    low: str | None,
    high: str | None,
    condition: Any = None,
    oldest_first: bool = False,
    page_size: int = 100,
) -> Iterator[AuditEvent]:
    """The organization's events with keys from ``low`` (inclusive) to ``high`` (exclusive, but an
    event whose key is exactly ``high`` may be included), newest first unless ``oldest_first``,
    read lazily: a day's shards are queried when the walk reaches that day."""
    if low is not None and high is not None and low > high:
        return  # a cursor past the range's start: nothing is left (and DynamoDB refuses such a range)
    now = clock.now()
    oldest = max(
        audit_shards.day_of(now - timedelta(days=settings().audit_retention_days)),
        audit_shards.day_of(org.created_at),
    )
    newest = audit_shards.day_of(now + CLOCK_SKEW)
    if low is not None:
        oldest = max(oldest, audit_shards.day_of_key(low) or oldest)
    if high is not None:
        newest = min(newest, audit_shards.day_of_key(high) or newest)
    span = (newest - oldest).days
    if span < 0:
        return
    days = [oldest + timedelta(days=offset) for offset in range(span + 1)]
    for day in days if oldest_first else reversed(days):
        shards = [
            AuditEvent.query(
                audit_shards.shard_key(org.org_id, day, shard),
                _key_range(low, high),
                filter_condition=condition,
                scan_index_forward=oldest_first,
                page_size=page_size,
                consistent_read=True,
            )
            for shard in range(audit_shards.count_for_day(org, day))
        ]
        yield from heapq.merge(*shards, key=_event_key, reverse=not oldest_first)


def _event_key(entry: AuditEvent) -> str:
    return entry.event_key


def _key_range(low: str | None, high: str | None) -> Any:
    if low and high:
        return AuditEvent.event_key.between(low, high)
    if low:
        return AuditEvent.event_key >= low
    if high:
        return AuditEvent.event_key <= high
    return None


def describe(entry: AuditEvent) -> dict[str, Any]:
    return {
        "at": clock.iso(entry.at),
        "actor": entry.actor,
        "actor_kind": entry.actor_kind or _recorded_before_kinds(entry.actor).value,
        "action": entry.action,
        "target": entry.target,
        "user_id": entry.user_id,
        "source_ip": entry.source_ip,
        "user_agent": entry.user_agent,
        "details": entry.details.as_dict() if entry.details is not None else None,
    }


def _recorded_before_kinds(name: str) -> ActorKind:
    """The kind of an event's actor from before kinds were recorded, judged by the name."""
    if name == OPERATOR.name:
        return ActorKind.OPERATOR
    if name.startswith("backup credentials "):
        return ActorKind.BACKUP_CREDENTIALS
    return ActorKind.MEMBER
