"""An organization's members as its admins see them: key counts and compliance."""
from __future__ import annotations

from typing import Any

from chalicelib import clock, pagination
from chalicelib.models import Member


def list_members(*, org_id: str, limit: int, after: str | None) -> pagination.Page[Member]:
    """One page of the organization's members, by user ID."""
    start = {"org_id": {"S": org_id}, "user_id": {"S": after}} if after else None
    results = Member.query(org_id, limit=limit, page_size=limit, last_evaluated_key=start, consistent_read=True)
    members = list(results)
    last = results.last_evaluated_key
    return pagination.Page(items=members, next=pagination.encode(last["user_id"]["S"]) if last else None)


def describe(member: Member) -> dict[str, Any]:
    return {
        "id": member.user_id,
        "name": member.name,
        "email": member.email,
        "admin": bool(member.admin),
        "key_count": member.key_count,
        # Compliant with enforcement: holds at least one security key.
        "compliant": member.key_count > 0,
        "last_login_at": clock.iso(member.last_login_at),
    }
