"""Offboarding (``DELETE /org/members/{user_id}``): a member leaves the organization with everything
of theirs — keys, credential claims, enrolment passes, sessions — and is no longer counted."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from chalicelib.access.sessions import end_sessions, stored_sessions_of
from chalicelib.base import audit
from chalicelib.base.errors import CannotOffboardYourself, ConcurrentChange, MemberNotFound
from chalicelib.base.models import (
    CredentialClaim,
    Member,
    MemberActivity,
    Organization,
    SecurityKey,
    member_key,
)
from chalicelib.base.storage import ConditionsFailed, Item, transaction
from chalicelib.ceremony.credentials import keys_of
from chalicelib.counters import compliance, conditions, coverage
from chalicelib.keys import enrollment_passes
from chalicelib.keys.management import named

if TYPE_CHECKING:
    from chalicelib.base.context import Caller


# Sessions deleted by the offboarding request itself; they have already ended (their member is
# gone), so any beyond this wait for DynamoDB's TTL rather than hold the request up.
MAX_SESSIONS_DELETED = 2000


def offboard(*, caller: Caller, user_id: str) -> int:
    """``DELETE /org/members/{user_id}``: remove a member and everything of theirs.

    The member item, their activity item (last sign-in), their security keys and credential
    claims go in one transaction with the coverage counters and the audit event (which the
    audit log keeps); that ends every session of theirs at once. Their session items are then
    deleted in bulk. If the IdP signs them in again, they start over as a new member: no keys,
    no sessions, not counted twice.

    Returns how many sessions were deleted.

    Raises:
        CannotOffboardYourself: the member is the caller; nothing is read or written.
        MemberNotFound: no such member.
    """
    org_id = caller.org.org_id
    if user_id == caller.session.user_id:
        raise CannotOffboardYourself("You cannot offboard yourself: another admin can.")
    if not 0 < len(user_id) <= 255 or user_id.startswith(audit.BACKUP_USER_PREFIX):
        raise MemberNotFound("No such member.")

    org_version = [compliance.version_of(caller.org)]

    def remove() -> tuple[Member, int]:
        try:
            member = Member.get(org_id, user_id, consistent_read=True)
        except Member.DoesNotExist:
            raise MemberNotFound("No such member.") from None
        held = keys_of(org_id=org_id, user_id=user_id)
        passes = enrollment_passes.passes_of(org_id=org_id, user_id=user_id)
        with transaction() as write:
            # The count condition makes a key registered meanwhile fail this transaction (it is
            # read and sent again) rather than outlive its member.
            standing = replace(conditions.standing_of(member), key_count=len(held))
            counted_as = coverage.remove_member(
                write, org_id=org_id, standing=standing, compliance_version=org_version[0]
            )
            write.delete(Item.MEMBER, member, condition=counted_as)
            # With the member: a login that read them before this fails its condition on it.
            write.delete(Item.MEMBER_ACTIVITY, MemberActivity(member_key(org_id, user_id)))
            for key in held:
                write.delete(Item.KEY, key, condition=SecurityKey.key_id.exists())
                write.delete(Item.CLAIM, CredentialClaim(key.key_id))
            # Their passes are void once they are gone (bound to the member as created, see
            # enrollment_passes.of_member), one issued after this read included; deleted all the same,
            # as many as fit beside the member, the counters, the keys and their claims, and the
            # audit event added next.
            fitting = write.room(keeping=1)
            for enrollment_pass in passes[:fitting]:
                write.delete(Item.ENROLLMENT_PASS, enrollment_pass)
            write.save(
                Item.AUDIT,
                audit.event(
                    org_id=org_id,
                    actor=caller.actor,
                    action="member.offboarded",
                    target=user_id,
                    user_id=user_id,
                    client=caller.client,
                    details={
                        "keys_deleted": len(held),
                        "keys": named(held),
                        "name": member.name,
                        "email": member.email,
                    },
                ),
            )
        # The few that do not fit the transaction (a member issued dozens) go right after it.
        leftover = passes[fitting:]
        for start in range(0, len(leftover), 100):
            with transaction() as write:
                for enrollment_pass in leftover[start : start + 100]:
                    write.delete(Item.ENROLLMENT_PASS, enrollment_pass)
        return member, len(held)

    for attempt in range(conditions.MAX_ATTEMPTS):
        try:
            conditions.sent_again_on_conflict(remove, org_id=org_id)
            break
        except ConditionsFailed:
            # The organization's compliance version may have moved: count with the one it has now.
            org_version[0] = compliance.version_of(Organization.get(org_id, consistent_read=True))
            if attempt == conditions.MAX_ATTEMPTS - 1:
                raise ConcurrentChange("The member's keys kept changing; try again.") from None
    leftover = [
        session
        # The index may not list a session started a moment ago: it ended with its member all the same.
        for session in stored_sessions_of(org_id=org_id, user_id=user_id, limit=MAX_SESSIONS_DELETED)
        if session.session_id != caller.session.session_id
    ]
    return end_sessions(leftover)
