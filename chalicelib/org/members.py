"""An organization's members as its admins see them: key counts and compliance."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chalicelib.base import clock, pagination
from chalicelib.base.errors import MalformedRequest
from chalicelib.base.models import Member, MemberActivity, Organization, member_key
from chalicelib.counters import compliance, coverage
from chalicelib.counters.coverage import Bucket


def list_members(*, org_id: str, limit: int, after: str | None, search: str | None = None) -> pagination.Page[Member]:
    """One page of the organization's members, by user ID; with ``search``, only those whose user
    ID starts with it (a condition on the sort key: one query, whatever the organization's size)."""
    start = {"org_id": {"S": org_id}, "user_id": {"S": after}} if after else None
    results = Member.query(
        org_id,
        Member.user_id.startswith(search) if search else None,
        limit=limit,
        page_size=limit,
        last_evaluated_key=start,
        consistent_read=True,
    )
    members = list(results)
    last = results.last_evaluated_key
    return pagination.Page(items=members, next=pagination.encode(last["user_id"]["S"]) if last else None)


def check_bucket(raw: str) -> Bucket:
    """``?mfa=none|one|many``."""
    try:
        return Bucket(raw)
    except ValueError:
        raise MalformedRequest("'mfa' must be one of none, one, many.") from None


def list_members_by_coverage(
    *, org_id: str, bucket: Bucket, limit: int, after: str | None, search: str | None = None
) -> pagination.Page[Member]:
    """One page of the organization's members holding none, one or many keys, by user ID; with
    ``search``, only those whose user ID starts with it.

    A query of the coverage index reads only this page's entries, then one batch read fetches
    those members: a page costs its own size, not the organization's. The index lags its table
    by a moment, so a member whose count just changed is left out of a bucket they just left.
    """
    partition = coverage.coverage_key(org_id=org_id, bucket=bucket)
    start = {"coverage": {"S": partition}, "user_id": {"S": after}, "org_id": {"S": org_id}} if after else None
    results = Member.by_coverage.query(
        partition,
        Member.user_id.startswith(search) if search else None,
        limit=limit,
        page_size=limit,
        last_evaluated_key=start,
    )
    user_ids = [entry.user_id for entry in results]
    last = results.last_evaluated_key
    found = {
        member.user_id: member
        for member in Member.batch_get([(org_id, user_id) for user_id in user_ids], consistent_read=True)
    }
    members = [
        found[user_id]
        for user_id in user_ids
        if user_id in found and coverage.bucket_of(int(found[user_id].key_count)) is bucket
    ]
    return pagination.Page(items=members, next=pagination.encode(last["user_id"]["S"]) if last else None)


def list_admins_without_key(*, org_id: str, limit: int) -> list[Member]:
    """The first admins of the organization who hold no security key, by user ID: one query of
    the sparse AdminsWithoutKey index and one batch read, whatever the organization's size."""
    user_ids = [entry.user_id for entry in Member.admins_without_key.query(org_id, limit=limit, page_size=limit)]
    found = {
        member.user_id: member
        for member in Member.batch_get([(org_id, user_id) for user_id in user_ids], consistent_read=True)
    }
    # The index lags its table by a moment: leave out whoever just registered a key or stopped being an admin.
    return [
        found[user_id]
        for user_id in user_ids
        if user_id in found and found[user_id].admin and int(found[user_id].key_count or 0) == 0
    ]


@dataclass(frozen=True)
class LastSignIns:
    """When members last signed in, from their activity items (:class:`MemberActivity`)."""

    found: dict[str, MemberActivity]  # by member_key

    def of(self, member: Member) -> datetime | None:
        activity = self.found.get(member_key(member.org_id, member.user_id))
        if activity is not None and activity.member_created_at == member.created_at:
            return activity.last_login_at
        # Not signed in since sign-ins were recorded apart: the time stored on the member, if any.
        return member.last_login_at


def last_sign_ins(*, org_id: str, members: Sequence[Member]) -> LastSignIns:
    """The last sign-ins of ``members`` (a page): one batch read (BatchGetItem takes 100 keys),
    none for an empty page."""
    keys = sorted({member_key(org_id, member.user_id) for member in members})
    if not keys:
        return LastSignIns(found={})
    return LastSignIns(
        found={activity.member: activity for activity in MemberActivity.batch_get(keys, consistent_read=True)}
    )


def describe(member: Member, *, org: Organization, last_sign_ins: LastSignIns) -> dict[str, Any]:
    return {
        "id": member.user_id,
        "name": member.name,
        "email": member.email,
        "admin": bool(member.admin),
        "key_count": member.key_count,
        # Holds a key the organization's authenticator policy accepts; null while being recounted.
        "compliant": compliance.member_compliant(member=member, org=org),
        "last_login_at": clock.iso(last_sign_ins.of(member)),
    }
