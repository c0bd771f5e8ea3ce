"""Joining and leaving an organization: the first login creates a member (and counts them), later
logins refresh what the IdP owns, and offboarding removes a member with everything of theirs.

A member is created and counted in one transaction, and deleted and uncounted in one; so the
organization's counters (chalicelib/counters/coverage.py) never drift. Deleting the member item is what
ends their sessions at once: every request reads the member, and a session older than its member
is refused (see :func:`outlived_member`), so a returning user starts over with none of the old.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from pynamodb.exceptions import UpdateError
from pynamodb.expressions.update import Action

from chalicelib.base import audit
from chalicelib.base.deferred import deferred
from chalicelib.base.errors import ConcurrentChange, MemberNotFound
from chalicelib.base.models import CredentialClaim, Member, Organization, SecurityKey, Session
from chalicelib.base.storage import ConditionsFailed, LabelledWrite, condition_failed, transaction

# Every request asks this module whether its session outlived its member; only joining and
# leaving count members, so the counters' module loads with the first of those.
coverage = deferred("chalicelib.counters.coverage")

if TYPE_CHECKING:
    from chalicelib.base.context import Caller


@dataclass(frozen=True)
class Returning:
    """A returning member's login: the member as stored, brought up to date, and the update to
    write with the login's session (no round trip of its own)."""

    member: Member
    actions: list[Action]

    def add_to(self, write: LabelledWrite) -> None:
        write.update("member", Member(self.member.org_id, self.member.user_id), actions=self.actions,
                     condition=Member.user_id.exists())


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
    *, org_id: str, user_id: str, name: str, email: str, admin: bool, signed_in: datetime, known_new: bool = False,
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
            org_id, user_id, name=name, email=email, admin=admin, key_count=0,
            coverage=coverage.coverage_key(org_id=org_id, bucket=coverage.Bucket.NONE),
            admin_without_key=coverage.admin_without_key_for(org_id=org_id, admin=admin, key_count=0),
            created_at=signed_in, last_login_at=signed_in,
        )

        def create() -> None:
            with transaction() as write:
                write.save("member", joining, condition=Member.user_id.does_not_exist())
                coverage.add_member(write, org_id=org_id, admin=admin)

        try:
            coverage.sent_again_on_conflict(create, org_id=org_id)
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
    for _ in range(coverage.MAX_ATTEMPTS):
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
                write.update("member", Member(org_id, user_id), actions=[
                    Member.admin.set(admin),
                    Member.admin_without_key.set(entry) if entry else Member.admin_without_key.remove(),
                ], condition=Member.user_id.exists() & (Member.key_count == key_count)
                    & ((Member.admin == True) if was else ((Member.admin == False) | Member.admin.does_not_exist())))  # noqa: E712
                write.update("org counters", Organization(org_id), actions=org_actions)

        try:
            coverage.sent_again_on_conflict(store, org_id=org_id)
            member.admin = admin
            member.admin_without_key = entry
            return
        except ConditionsFailed:
            try:
                member = Member.get(org_id, user_id, consistent_read=True)
            except Member.DoesNotExist:
                return  # offboarded meanwhile: the login that follows finds no member
    raise ConcurrentChange("The member's keys kept changing; sign in again.")


def outlived_member(*, session: Session, member: Member) -> bool:
    """A session started before its member was created belongs to an earlier, offboarded member
    of the same user ID: it must not come back to life when that user signs in again."""
    return member.created_at is not None and session.created_at < member.created_at


# Sessions deleted by the offboarding request itself; they have already ended (their member is
# gone), so any beyond this wait for DynamoDB's TTL rather than hold the request up.
MAX_SESSIONS_DELETED = 2000


def offboard(*, caller: Caller, user_id: str) -> int:
    """``DELETE /org/members/{user_id}``: remove a member and everything of theirs.

    The member item, their security keys and credential claims go in one transaction with the
    coverage counters and the audit event (which the audit log keeps); that ends every session
    of theirs at once. Their session items are then deleted in bulk. If the IdP signs them in
    again, they start over as a new member: no keys, no sessions, not counted twice.

    Returns how many sessions were deleted.

    Raises:
        MemberNotFound: no such member.
    """
    org_id = caller.org.org_id
    if not 0 < len(user_id) <= 255 or user_id.startswith(audit.BACKUP_USER_PREFIX):
        raise MemberNotFound("No such member.")

    from chalicelib.counters import compliance

    org_version = [compliance.version_of(caller.org)]

    def remove() -> tuple[Member, int]:
        try:
            member = Member.get(org_id, user_id, consistent_read=True)
        except Member.DoesNotExist:
            raise MemberNotFound("No such member.") from None
        from chalicelib.keys.enrollment import passes_of
        from chalicelib.ceremony.credentials import keys_of
        from chalicelib.keys.keys import named

        held = keys_of(org_id=org_id, user_id=user_id)
        passes = passes_of(org_id=org_id, user_id=user_id)
        with transaction() as write:
            # The count condition makes a key registered meanwhile fail this transaction (it is
            # read and sent again) rather than outlive its member.
            standing = replace(coverage.standing_of(member), key_count=len(held))
            counted_as = coverage.remove_member(write, org_id=org_id, standing=standing, compliance_version=org_version[0])
            write.delete("member", member, condition=counted_as)
            for key in held:
                write.delete("key", key, condition=SecurityKey.key_id.exists())
                write.delete("claim", CredentialClaim(key.key_id))
            # Their passes are void once they are gone (bound to the member as created, see
            # enrollment.of_member), one issued after this read included; deleted all the same,
            # as many as fit beside the member, the counters, the keys and their claims, and the
            # audit event added next.
            fitting = write.room(keeping=1)
            for enrollment_pass in passes[:fitting]:
                write.delete("enrollment pass", enrollment_pass)
            write.save("audit", audit.event(
                org_id=org_id, actor=caller.actor, action="member.offboarded", target=user_id, user_id=user_id,
                client=caller.client, details={"keys_deleted": len(held), "keys": named(held), "name": member.name,
                                                "email": member.email},
            ))
        # The few that do not fit the transaction (a member issued dozens) go right after it.
        leftover = passes[fitting:]
        for start in range(0, len(leftover), 100):
            with transaction() as write:
                for enrollment_pass in leftover[start:start + 100]:
                    write.delete("enrollment pass", enrollment_pass)
        return member, len(held)

    for attempt in range(coverage.MAX_ATTEMPTS):
        try:
            coverage.sent_again_on_conflict(remove, org_id=org_id)
            break
        except ConditionsFailed:
            # The organization's compliance version may have moved: count with the one it has now.
            org_version[0] = compliance.version_of(Organization.get(org_id, consistent_read=True))
            if attempt == coverage.MAX_ATTEMPTS - 1:
                raise ConcurrentChange("The member's keys kept changing; try again.") from None
    leftover = [
        session for session in Session.by_member.query(org_id, Session.user_id == user_id, consistent_read=True,
                                                       limit=MAX_SESSIONS_DELETED)
        if session.session_id != caller.session.session_id
    ]
    from chalicelib.access.sessions import end_sessions

    return end_sessions(leftover)
