"""The audit log: who did what to whom, when, and from where.

Events of an action that writes are saved in the same transaction as the action, so an action
that fails is never logged as done and a logged action cannot be missing its event. Refusals
(a failed MFA check, a wrong backup secret) are logged on their own.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any

from chalicelib.base import clock
from chalicelib.base.config import settings
from chalicelib.base.deferred import deferred
from chalicelib.base.models import AuditEvent

# Only reading the log pages through it: writing events, which most requests do, does not need it.
if TYPE_CHECKING:
    from chalicelib.base import pagination
else:
    pagination = deferred("chalicelib.base.pagination")

if TYPE_CHECKING:
    from chalicelib.base.pagination import Page

BACKUP_USER_PREFIX = "backup:"


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
) -> AuditEvent:
    """An audit event, not yet saved: save it on its own or add it to the action's transaction.

    ``actor`` is an :class:`Actor` (``caller.actor``, :data:`OPERATOR`); a plain string is a
    member's user ID.
    """
    if isinstance(actor, str):
        actor = member_actor(actor)
    at = clock.now()
    client = client or Client()
    return AuditEvent(
        org_id,
        f"{at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}#{secrets.token_hex(4)}",
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


def add_details(entry: AuditEvent, **details: Any) -> None:
    """Add what became known after the event was made (the session a login started, say)."""
    known = entry.details.as_dict() if entry.details is not None else {}
    entry.details = {**known, **details}


def record(**fields: Any) -> None:
    """Save an event that belongs to no transaction (a refusal, a login)."""
    event(**fields).save()


KEY_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# An NDJSON export answers with at most this many events; its cursor continues from there.
EXPORT_PAGE = 5000


def _time_range(since: datetime | None, until: datetime | None) -> Any:
    """The event keys from ``since`` (inclusive) to ``until`` (exclusive): keys start with the event's time."""
    low = since.astimezone(UTC).strftime(KEY_TIME_FORMAT) if since else None
    # "...Z" sorts before every "...Z#suffix" of the same moment, so an event at `until` is left out.
    high = until.astimezone(UTC).strftime(KEY_TIME_FORMAT) if until else None
    if low and high:
        return AuditEvent.event_key.between(low, high)
    if low:
        return AuditEvent.event_key >= low
    if high:
        return AuditEvent.event_key < high
    return None


def list_events(
    *,
    org_id: str,
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

    The filters are DynamoDB's filter on the range read, which goes on reading until it holds
    ``limit`` matches or the range ends: a page is short only at the end (and may then be empty).
    """
    condition = None
    for wanted in (
        AuditEvent.action == action if action else None,
        AuditEvent.user_id == user_id if user_id else None,
        AuditEvent.actor == actor if actor else None,
    ):
        if wanted is not None:
            condition = wanted if condition is None else condition & wanted
    start = {"org_id": {"S": org_id}, "event_key": {"S": after}} if after else None
    results = AuditEvent.query(
        org_id,
        _time_range(since, until),
        filter_condition=condition,
        scan_index_forward=oldest_first,
        limit=limit,
        page_size=limit,
        last_evaluated_key=start,
        consistent_read=True,
    )
    found = list(results)
    last = results.last_evaluated_key
    return pagination.Page(items=found, next=pagination.encode(last["event_key"]["S"]) if last else None)


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
