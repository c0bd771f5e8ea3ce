"""Enforcing MFA for an organization, and ending its older sessions in bulk afterwards.

An enforcement increments the organization's ``enforcement_generation``. From that moment every
session of an older generation is refused at request time (see ``sessions.ended_by_enforcement``);
the stream function on the organizations table then deletes those sessions, in as many Lambda
invocations as it takes: when one runs short of time it records where it stopped and bumps
``invalidation.handoffs``, and the stream record of that write starts the next invocation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from chalicelib.access import grace
from chalicelib.base import audit, clock
from chalicelib.base.context import AlongChange, Caller
from chalicelib.base.errors import BackupCredentialsMissing, ConcurrentChange, MfaNotEnforced, SecurityKeyRequired
from chalicelib.base.models import Invalidation, Member, Organization
from chalicelib.base.storage import ConditionsFailed, Item, transaction
from chalicelib.counters import compliance, coverage

log = logging.getLogger("keyward.enforcement")

OPERATOR = audit.OPERATOR
# Sessions examined per query page; progress is saved after each page.


@dataclass(frozen=True)
class MfaStatus:
    """What ``GET /org/mfa`` shows."""

    org: Organization
    members_total: int
    # None while the figure is being recounted (see ``compliance_state``).
    members_compliant: int | None
    compliance_state: str = "done"


def status(*, org: Organization) -> MfaStatus:
    """The organization's enforcement and how many members hold a key that its authenticator
    policy accepts, from the organization's counters (chalicelib/counters/coverage.py,
    chalicelib/counters/compliance.py), whatever its size. ``org`` is the item the request read with its
    session (a transactional read, strongly consistent): no read of its own."""
    counters = coverage.counters_of(org)
    compliant = compliance.of(org)
    return MfaStatus(
        org=org,
        members_total=counters.members_total,
        members_compliant=compliant.members_compliant,
        compliance_state=compliant.state,
    )


def set_enforced(
    *,
    caller: Caller,
    enforced: bool,
    grace_period_hours: int | None = None,
    without_backup_credentials: bool = False,
    along: AlongChange | None = None,
) -> MfaStatus:
    """``PUT /org/mfa``: enforce MFA (ending every other session at once) or relax it.

    Enforcing requires the admin to hold a key themselves — checked inside the transaction,
    so a key deleted at the same moment cannot slip through — and the organization to hold
    backup credentials, its way back in when the IdP or the keys are lost, unless the admin says
    ``without_backup_credentials`` (then the enforcement's audit event records it). Repeating the current setting
    changes nothing. ``grace_period_hours`` (see chalicelib/access/grace.py) comes with a new enforcement
    (0 when left out) or changes the one in force, for everyone at once. ``along`` (another
    setting of the same request) is made in the same transaction, or alone when enforcement stays.

    Raises:
        SecurityKeyRequired: the admin has no security key of their own.
        BackupCredentialsMissing: the organization has no backup credentials, and the admin did
            not say ``without_backup_credentials``.
        ConcurrentChange: another admin changed the setting at the same moment.
    """
    # caller.org came with the session, strongly consistent: the write's conditions catch a change since.
    before = status(org=caller.org)
    if bool(before.org.mfa_enforced) == enforced:
        if enforced and grace_period_hours is not None and grace_period_hours != (before.org.grace_period_hours or 0):
            grace.change_period(
                org_id=before.org.org_id,
                hours=grace_period_hours,
                actor=caller.actor,
                client=caller.client,
                along=along,
            )
            before.org.grace_period_hours = grace_period_hours
        elif along is not None:
            along.commit()
        if along is not None:
            along.applied(before.org)
        return before
    # The answer is built from what was read before the change and what the change wrote: a read
    # failing after the commit would otherwise report 503 "nothing was changed" for a change made.
    changed = (
        _enforce(
            caller=caller,
            org=before.org,
            grace_period_hours=grace_period_hours or 0,
            without_backup_credentials=without_backup_credentials,
            along=along,
        )
        if enforced
        else _relax(caller=caller, org=before.org, along=along)
    )
    return replace(before, org=changed)


def change_grace_period(*, caller: Caller, hours: int, along: AlongChange | None = None) -> MfaStatus:
    """``PUT /org/mfa`` with ``grace_period_hours`` and no ``enforced``: change the grace period of
    the enforcement in force, for everyone at once — and never enforce. A console that shows a
    grace period to change may be showing an enforcement another admin has since turned off;
    ``"enforced": true`` there would enforce again unasked. ``along`` is refused with it.

    Raises:
        MfaNotEnforced: MFA is not enforced, so there is no grace period to change.
        ConcurrentChange: MFA was turned off at the same moment.
    """
    if not caller.org.mfa_enforced:
        raise MfaNotEnforced("MFA is not enforced, so it has no grace period to change; enforcing is 'enforced': true.")
    return set_enforced(caller=caller, enforced=True, grace_period_hours=hours, along=along)


def change_alone(*, org: Organization, change: AlongChange | None) -> MfaStatus:
    """``PUT /org/mfa`` without ``enforced``: another setting changes, enforcement stays. ``org`` is
    the item read with the session."""
    before = status(org=org)
    if change is not None:
        change.commit()
        change.applied(before.org)
    return before


def _enforce(
    *,
    caller: Caller,
    org: Organization,
    grace_period_hours: int,
    without_backup_credentials: bool,
    along: AlongChange | None,
) -> Organization:
    session = caller.session
    enforced_at = clock.now()
    generation = int(org.enforcement_generation) + 1
    # ``org`` was read with the session; the organization item's own condition holds the rule at
    # the write, so backup credentials deleted meanwhile cannot slip through, at no extra read.
    # DynamoDB removes a string set with its last element, so "exists" means "holds one". A request
    # refused for want of them still makes the write: only the transaction tells whether the admin
    # holds a key, the refusal named first.
    had_backup_credentials = bool(org.backup_key_ids)
    unchanged = (Organization.mfa_enforced == False) & (
        Organization.enforcement_generation == org.enforcement_generation
    )
    condition = unchanged if without_backup_credentials else unchanged & Organization.backup_key_ids.exists()
    recorded = {"without_backup_credentials": True} if not had_backup_credentials else {}
    try:
        with transaction() as write:
            write.condition_check(
                Item.MEMBER,
                Member,
                session.org_id,
                session.user_id,
                condition=Member.key_count > 0,
            )
            write.update(
                Item.ORG,
                Organization(org.org_id),
                actions=[
                    Organization.mfa_enforced.set(True),
                    Organization.enforced_at.set(enforced_at),
                    Organization.enforced_by.set(session.user_id),
                    Organization.enforcing_session_id.set(session.session_id),
                    Organization.enforcement_generation.set(generation),
                    Organization.invalidation.set(new_invalidation(generation=generation, started_at=enforced_at)),
                    *(along.actions() if along else []),
                    Organization.grace_period_hours.set(grace_period_hours),
                    Organization.last_enforced_at.set(enforced_at),
                ],
                condition=condition,
            )
            write.save(
                Item.AUDIT,
                audit.event(
                    org_id=org.org_id,
                    actor=caller.actor,
                    action="enforcement.enabled",
                    target=org.org_id,
                    client=caller.client,
                    details={
                        "generation": generation,
                        "session_id": session.session_id,
                        "grace_period_hours": grace_period_hours,
                        **recorded,
                    },
                ),
            )
            if along:
                along.add_to(write)
    except ConditionsFailed as refused:
        if Item.MEMBER in refused.labels:
            raise SecurityKeyRequired("Register a security key of your own before enforcing MFA.") from None
        if not without_backup_credentials and not had_backup_credentials:
            raise BackupCredentialsMissing(
                "The organization has no backup credentials: once MFA is enforced, a lost identity provider or "
                "lost security keys leave no way back in. Create backup credentials first, or send "
                "'without_backup_credentials': true to enforce without them."
            ) from None
        # Held backup credentials when the session was read: they, or the setting, changed since.
        changed = "MFA setting" if without_backup_credentials else "MFA setting or its backup credentials"
        raise ConcurrentChange(f"The organization's {changed} changed meanwhile; reload and try again.") from None
    org.mfa_enforced, org.enforced_at, org.enforced_by = True, enforced_at, session.user_id
    org.enforcing_session_id, org.enforcement_generation = session.session_id, generation
    org.invalidation = new_invalidation(generation=generation, started_at=enforced_at)
    org.grace_period_hours, org.last_enforced_at = grace_period_hours, enforced_at
    if along:
        along.applied(org)
    return org


def _relax(*, caller: Caller, org: Organization, along: AlongChange | None) -> Organization:
    # The generation and the enforcing session stay: sessions ended by the enforcement stay ended.
    try:
        with transaction() as write:
            write.update(
                Item.ORG,
                Organization(org.org_id),
                actions=[
                    Organization.mfa_enforced.set(False),
                    Organization.enforced_at.remove(),
                    Organization.enforced_by.remove(),
                    *(along.actions() if along else []),
                ],
                # A flag of the wrong type reads as enforced; relaxing is how an admin repairs it.
                condition=(Organization.mfa_enforced == True) | ~Organization.mfa_enforced.is_type(),
            )
            write.save(
                Item.AUDIT,
                audit.event(
                    org_id=org.org_id,
                    actor=caller.actor,
                    action="enforcement.disabled",
                    target=org.org_id,
                    client=caller.client,
                ),
            )
            if along:
                along.add_to(write)
    except ConditionsFailed:
        raise ConcurrentChange("The organization's MFA setting changed meanwhile; reload and try again.") from None
    org.mfa_enforced, org.enforced_at, org.enforced_by = False, None, None
    if along:
        along.applied(org)
    return org


def new_invalidation(*, generation: int, started_at: Any) -> Invalidation:
    return Invalidation(generation=generation, state="running", sessions_ended=0, started_at=started_at, handoffs=0)
