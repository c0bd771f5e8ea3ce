"""Joining an organization: the first login creates a member (and counts them), later logins
refresh what the IdP owns. Leaving is offboarding (chalicelib/org/offboarding.py).

A member is created and counted in one transaction, and deleted and uncounted in one; so the
organization's counters (chalicelib/counters/coverage.py) never drift. Deleting the member item is what
ends their sessions at once: every request reads the member, and a session older than its member
is refused (see ``sessions.outlived_member``), so a returning user starts over with none of the old.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pynamodb.exceptions import UpdateError
from pynamodb.expressions.update import Action

from chalicelib.base.errors import ConcurrentChange
from chalicelib.base.models import Member, Organization
from chalicelib.base.storage import (
    ConditionsFailed,
    Item,
    LabelledWrite,
    condition_failed,
    transaction,
)
from chalicelib.counters import conditions, coverage


@dataclass(frozen=True)
class Returning:
    """A returning member's login: the member as stored, brought up to date, and the update to
    write with the login's session (no round trip of its own)."""

    member: Member
    actions: list[Action]

    def add_to(self, write: LabelledWrite) -> None:
        write.update(
            Item.MEMBER,
            Member(self.member.org_id, self.member.user_id),
            actions=self.actions,
            condition=Member.user_id.exists(),
        )


def returning(*, member: Member, name: str, email: str, admin: bool, signed_in: datetime) -> Returning:
    """What a login of a stored member changes: the time, and the profile claims the IdP sent
    that differ from the stored ones (a missing claim keeps what the member had). A changed
    admin claim is written at once, with the admin counters (:func:`change_admin`)."""
    actions: list[Action] = [Member.last_login_at.set(signed_in)]
    if name and name != member.name:
        actions.append(Member.name.set(name))
        member.name = name
    if email and email != member.email:
        actions.append(Member.email.set(email))
        member.email = email
    if bool(member.admin) != admin:
        # Admins are counted: the flag changes in a transaction of its own, with the counters.
        change_admin(member=member, admin=admin)
    member.last_login_at = signed_in
    return Returning(member=member, actions=actions)


def sign_in_member(
    *,
    org_id: str,
    user_id: str,
    name: str,
    email: str,
    admin: bool,
    signed_in: datetime,
    known_new: bool = False,
) -> Member:
    """Refresh the member an ID token names, or create and count them on their first login
    (``known_new``: a read just found no such member, so creating is tried first).

    An IdP may leave out profile claims; a missing one keeps what the member had.
    """
    for attempt in range(2):
        if not (known_new and attempt == 0):
            member = Member(org_id, user_id)
            try:
                member.update(
                    actions=[
                        Member.name.set(name if name else (Member.name | "")),
                        Member.email.set(email if email else (Member.email | "")),
                        Member.last_login_at.set(signed_in),
                    ],
                    condition=Member.user_id.exists(),
                )
                if bool(member.admin) != admin:
                    change_admin(member=member, admin=admin)
                return member
            except UpdateError as error:
                if not condition_failed(error):
                    raise
        joining = Member(
            org_id,
            user_id,
            name=name,
            email=email,
            admin=admin,
            key_count=0,
            coverage=coverage.coverage_key(org_id=org_id, bucket=coverage.Bucket.NONE),
            admin_without_key=coverage.admin_without_key_for(org_id=org_id, admin=admin, key_count=0),
            created_at=signed_in,
            last_login_at=signed_in,
        )

        def create() -> None:
            with transaction() as write:
                write.save(Item.MEMBER, joining, condition=Member.user_id.does_not_exist())
                coverage.add_member(write, org_id=org_id, admin=admin)

        try:
            conditions.sent_again_on_conflict(create, org_id=org_id)
            return joining
        except ConditionsFailed:
            continue  # a simultaneous first login created the member: refresh it instead
    raise AssertionError("the member was created and deleted again during this login")


def change_admin(*, member: Member, admin: bool) -> None:
    """Make the member an admin, or no longer one, as the IdP's admin claim now says: with the
    organization's admin counters and the member's entry among the admins without a key, in one
    transaction conditional on the member's key count and flag as read (re-read if they moved).
    Updates ``member`` as stored."""
    org_id, user_id = member.org_id, member.user_id
    for _ in range(conditions.MAX_ATTEMPTS):
        was, key_count = bool(member.admin), int(member.key_count or 0)
        if was == admin:
            return
        step = 1 if admin else -1
        org_actions = [Organization.admins_total.add(step)]
        if key_count > 0:
            org_actions.append(Organization.admins_with_key.add(step))
        entry = coverage.admin_without_key_for(org_id=org_id, admin=admin, key_count=key_count)

        def store() -> None:
            with transaction() as write:
                write.update(
                    Item.MEMBER,
                    Member(org_id, user_id),
                    actions=[
                        Member.admin.set(admin),
                        Member.admin_without_key.set(entry) if entry else Member.admin_without_key.remove(),
                    ],
                    condition=Member.user_id.exists()
                    & (Member.key_count == key_count)
                    & ((Member.admin == True) if was else ((Member.admin == False) | Member.admin.does_not_exist())),
                )
                write.update(Item.ORG_COUNTERS, Organization(org_id), actions=org_actions)

        try:
            conditions.sent_again_on_conflict(store, org_id=org_id)
            member.admin = admin
            member.admin_without_key = entry
            return
        except ConditionsFailed:
            try:
                member = Member.get(org_id, user_id, consistent_read=True)
            except Member.DoesNotExist:
                return  # offboarded meanwhile: the login that follows finds no member
    raise ConcurrentChange("The member's keys kept changing; sign in again.")
