"""Joining and leaving an organization: the first login creates a member (and counts them), later
logins refresh what the IdP owns, and offboarding removes a member with everything of theirs.

A member is created and counted in one transaction, and deleted and uncounted in one; so the
organization's counters (chalicelib/coverage.py) never drift. Deleting the member item is what
ends their sessions at once: every request reads the member, and a session older than its member
is refused (see :func:`outlived_member`), so a returning user starts over with none of the old.
"""
from __future__ import annotations

from datetime import datetime
from typing import Callable

from pynamodb.exceptions import UpdateError

from chalicelib import audit, coverage
from chalicelib.coverage import Bucket
from chalicelib.models import CredentialClaim, Member, SecurityKey, Session
from chalicelib.storage import ConditionsFailed, LabelledWrite, condition_failed, transaction


def sign_in_member(*, org_id: str, user_id: str, name: str, email: str, admin: bool, signed_in: datetime) -> Member:
    """Refresh the member an ID token names, or create and count them on their first login.

    An IdP may leave out profile claims; a missing one keeps what the member had.
    """
    for _ in range(2):
        member = Member(org_id, user_id)
        try:
            member.update(
                actions=[
                    Member.name.set(name if name else (Member.name | "")),
                    Member.email.set(email if email else (Member.email | "")),
                    Member.admin.set(admin),
                    Member.last_login_at.set(signed_in),
                ],
                condition=Member.user_id.exists(),
            )
            return member
        except UpdateError as error:
            if not condition_failed(error):
                raise
        joining = Member(
            org_id, user_id, name=name, email=email, admin=admin, key_count=0,
            coverage=coverage.coverage_key(org_id=org_id, bucket=Bucket.NONE),
            created_at=signed_in, last_login_at=signed_in,
        )

        def create() -> None:
            with transaction() as write:
                write.save("member", joining, condition=Member.user_id.does_not_exist())
                coverage.add_member(write, org_id=org_id)

        try:
            coverage.sent_again_on_conflict(create, org_id=org_id)
            return joining
        except ConditionsFailed:
            continue  # a simultaneous first login created the member: refresh it instead
    raise AssertionError("the member was created and deleted again during this login")


def outlived_member(*, session: Session, member: Member) -> bool:
    """A session started before its member was created belongs to an earlier, offboarded member
    of the same user ID: it must not come back to life when that user signs in again."""
    return member.created_at is not None and session.created_at < member.created_at
