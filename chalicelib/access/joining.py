"""Joining an organization: the first login creates a member (and counts them), later logins
record their time on the member's activity item and refresh what the IdP owns. Leaving is
offboarding (chalicelib/org/offboarding.py).

A member is created and counted in one transaction, and deleted and uncounted in one; so the
organization's counters (chalicelib/counters/coverage.py) never drift. Deleting the member item is what
ends their sessions at once: every request reads the member, and a session older than its member
is refused (see ``sessions.outlived_member``), so a returning user starts over with none of the old.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from chalicelib.access import login_rate
from chalicelib.base import metrics
from chalicelib.base.errors import ConcurrentChange
from chalicelib.base.models import Member, MemberActivity, Organization, member_key
from chalicelib.base.storage import ConditionsFailed, Item, LabelledWrite, transaction
from chalicelib.counters import conditions, coverage


@dataclass(frozen=True)
class Returning:
    """A returning member's login: the member as stored, brought up to date, and what to write
    with the login's session (no round trip of its own).

    The login's time goes on the member's activity item, keyed per member, not on the member
    item: that one shares its partition key with every member of the organization, and a
    sign-in storm would write it at every login. The member item is written only when a
    profile claim changed.
    """

    member: Member
    # The member item's changes: the profile claims that differ from the stored ones.
    profile: list[Action]
    activity: MemberActivity
    # Whether the activity item was found, naming this member as created: its own condition
    # then stands for the member's. A member stored before activity items were has none yet.
    recorded: bool

    def add_to(self, write: LabelledWrite) -> None:
        member = self.member
        if self.recorded:
            # Offboarding deletes the activity item with its member: a member offboarded (or
            # offboarded and created again) since the login read them fails this condition, and
            # no session starts, without the login touching the organization's partition.
            write.save(Item.MEMBER_ACTIVITY, self.activity, condition=_recorded_for(member))
        else:
            # Once per member, the first login since activity items were introduced: the member
            # item's condition protects it instead, and the activity item is created.
            write.save(Item.MEMBER_ACTIVITY, self.activity)
        if self.profile:
            write.update(
                Item.MEMBER,
                Member(member.org_id, member.user_id),
                actions=self.profile,
                condition=_same_member(member),
            )
        elif not self.recorded:
            write.condition_check(Item.MEMBER, Member, member.org_id, member.user_id, condition=_same_member(member))


def returning(
    *, member: Member, activity: MemberActivity | None, name: str, email: str, admin: bool, signed_in: datetime
) -> Returning:
    """What a login of a stored member changes: the time of their last sign-in (``activity``,
    their activity item as read, if any), and the profile claims the IdP sent that differ from
    the stored ones (a missing claim keeps what the member had). A changed admin claim is
    written at once, with the admin counters (:func:`change_admin`)."""
    profile: list[Action] = []
    if name and name != member.name:
        profile.append(Member.name.set(name))
        member.name = name
    if email and email != member.email:
        profile.append(Member.email.set(email))
        member.email = email
    if bool(member.admin) != admin:
        # Admins are counted: the flag changes in a transaction of its own, with the counters.
        change_admin(member=member, admin=admin)
    return Returning(
        member=member,
        profile=profile,
        activity=activity_of(member, signed_in=signed_in),
        recorded=activity is not None and activity.member_created_at == member.created_at,
    )


def activity_of(member: Member, *, signed_in: datetime) -> MemberActivity:
    """The member's activity item, as a sign-in at ``signed_in`` leaves it."""
    return MemberActivity(
        member_key(member.org_id, member.user_id),
        member_created_at=member.created_at,
        last_login_at=signed_in,
    )


def join(*, org: Organization, user_id: str, name: str, email: str, admin: bool, signed_in: datetime) -> Member | None:
    """Create and count the member an ID token names, on their first login; with their activity
    item, and with the login's count of the organization's login rate (:mod:`login_rate`), so
    that a login the rate refuses creates no one. None when a simultaneous first login created
    them first: the login goes on as a returning member's.

    Raises:
        OrganizationRateLimited: the organization started as many sessions this second as it may;
            nothing was written.
    """
    org_id = org.org_id
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
    )

    def create() -> None:
        with transaction() as write:
            write.save(Item.MEMBER, joining, condition=Member.user_id.does_not_exist())
            # Unconditional: an activity item of an earlier member of this ID names another
            # creation time, and is replaced.
            write.save(Item.MEMBER_ACTIVITY, activity_of(joining, signed_in=signed_in))
            coverage.add_member(write, org_id=org_id, admin=admin)
            login_rate.count_login(write, org=org, at=signed_in)

    try:
        conditions.sent_again_on_conflict(create, org_id=org_id)
    except ConditionsFailed as refused:
        if Item.LOGIN_RATE in refused.labels:
            metrics.count("LoginsRateLimited", org=org_id, limit=login_rate.limit_of(org))
            raise login_rate.refusal(org) from None
        return None
    return joining


def _same_member(member: Member) -> Condition:
    """The member item is still ``member``: not offboarded, nor created again under the same ID."""
    if member.created_at is None:  # stored before members recorded their creation
        return Member.user_id.exists() & Member.created_at.does_not_exist()
    return Member.created_at == member.created_at


def _recorded_for(member: Member) -> Condition:
    """The activity item is still ``member``'s: not deleted with them, nor written for a member
    of the same ID created since."""
    if member.created_at is None:
        return MemberActivity.member.exists() & MemberActivity.member_created_at.does_not_exist()
    return MemberActivity.member_created_at == member.created_at


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
