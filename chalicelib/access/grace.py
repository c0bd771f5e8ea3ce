"""The grace period of an enforcement: how long members without a security key may keep signing
in and working after an organization enforces MFA.

The rule: the deadline is the enforcement's time plus the organization's ``grace_period_hours``
(0, the default, means at once). Before it, a keyless member's login is ``active``; from it on,
their next login or request finds their session ``registration_required``. The deadline is
computed from the organization on every request, so changing the period — longer or shorter —
applies to everyone at once. Enforcing still ends every other session immediately.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pynamodb.exceptions import UpdateError

from chalicelib.base import audit, clock
from chalicelib.base.audit import BACKUP_USER_PREFIX
from chalicelib.base.errors import ConcurrentChange, MalformedRequest
from chalicelib.base.models import Member, Organization, Session
from chalicelib.base.storage import ConditionsFailed, Item, condition_failed, transaction

if TYPE_CHECKING:
    from chalicelib.base.context import AlongChange

MAX_HOURS = 720  # 30 days


def check_hours(hours: object) -> int:
    """A grace period as the API accepts it: a whole number of hours, 0 to 720."""
    if isinstance(hours, bool) or not isinstance(hours, int) or not 0 <= hours <= MAX_HOURS:
        raise MalformedRequest(f"'grace_period_hours' must be a whole number from 0 to {MAX_HOURS}.")
    return hours


def registration_due_at(org: Organization) -> datetime | None:
    """When keyless members must have registered a key; None when MFA is not enforced, or no
    grace period applies (an enforcement not yet recorded by the API counts from now: at once)."""
    if not org.mfa_enforced or org.enforced_at is None or not org.grace_period_hours:
        return None
    return org.enforced_at + timedelta(hours=int(org.grace_period_hours))


def member_due_at(*, org: Organization, member: Member) -> datetime | None:
    """The member's own deadline: only members without a key have one. Backup-credentials
    sessions have none: they cannot register a key, and the deadline does not apply to them."""
    if member.key_count > 0 or member.user_id.startswith(BACKUP_USER_PREFIX):
        return None
    return registration_due_at(org)


def registration_deferred(org: Organization) -> bool:
    """True while the grace period lets a keyless member work without registering."""
    due = registration_due_at(org)
    return due is not None and clock.now() < due


def past_deadline(*, session: Session, org: Organization, member: Member) -> bool:
    """Whether a keyless member's active session has passed the registration deadline, and so
    must register a key first. Backup-credentials sessions hold no keys and are not members: the
    rule is not theirs."""
    return (
        session.state == "active"
        and bool(org.mfa_enforced)
        and member.key_count == 0
        and not session.user_id.startswith(BACKUP_USER_PREFIX)
        and not registration_deferred(org)
    )


def apply_deadline(*, session: Session, org: Organization, member: Member) -> None:
    """At request time: once the deadline has passed, a keyless member's active session must
    register a key first. Recorded on the session, so that registering activates it again."""
    if not past_deadline(session=session, org=org, member=member):
        return
    try:
        session.update(
            actions=[Session.state.set("registration_required")],
            condition=Session.session_id.exists()
            & (Session.state == "active")
            & (Session.token_hash == session.token_hash),
        )
    except UpdateError as error:
        if not condition_failed(error):
            raise
        # The session changed meanwhile (registered a key, ended): the request reads it as it was,
        # but never as active past the deadline.
    session.state = "registration_required"


def change_period(
    *,
    org_id: str,
    hours: int,
    actor: audit.Actor,
    client: audit.Client,
    along: AlongChange | None = None,
) -> None:
    """Change the grace period of the enforcement in force: applies to everyone at once.
    ``along`` (another setting of the same request) is written in the same transaction.

    Raises:
        ConcurrentChange: MFA was relaxed meanwhile.
    """
    try:
        with transaction() as write:
            write.update(
                Item.ORG,
                Organization(org_id),
                actions=[Organization.grace_period_hours.set(hours), *(along.actions() if along else [])],
                condition=Organization.mfa_enforced == True,
            )
            write.save(
                Item.AUDIT,
                audit.event(
                    org_id=org_id,
                    actor=actor,
                    action="enforcement.grace_period_changed",
                    target=org_id,
                    client=client,
                    details={"grace_period_hours": hours},
                ),
            )
            if along:
                along.add_to(write)
    except ConditionsFailed:
        raise ConcurrentChange("The organization's MFA setting changed meanwhile; reload and try again.") from None
