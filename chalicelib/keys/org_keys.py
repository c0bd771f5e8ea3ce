"""An organization's security keys as its admins manage them: the list (optionally only the keys
its policy does not accept) and deleting a member's key."""

from __future__ import annotations

from chalicelib.base import pagination
from chalicelib.base.context import Caller
from chalicelib.base.errors import (
    KeyNotFound,
)
from chalicelib.base.models import Member, SecurityKey
from chalicelib.ceremony import authenticator_policy
from chalicelib.ceremony.authenticator_policy import AuthenticatorPolicy, KeyFacts
from chalicelib.keys.management import check_key_id, remove_key


def list_org_keys(
    *,
    org_id: str,
    limit: int,
    after: str | None,
    user_id: str | None = None,
    noncompliant_under: AuthenticatorPolicy | None = None,
) -> pagination.Page[SecurityKey]:
    """One page of the organization's security keys (or one member's), with their owners; with
    ``noncompliant_under``, only the keys that fall short of that policy."""
    if noncompliant_under is not None:
        return _noncompliant_keys(org_id=org_id, limit=limit, after=after, user_id=user_id, policy=noncompliant_under)
    if user_id is not None:
        start = {"org_id": {"S": org_id}, "key_id": {"S": after}, "user_id": {"S": user_id}} if after else None
        results = SecurityKey.by_member.query(
            org_id,
            SecurityKey.user_id == user_id,
            limit=limit,
            page_size=limit,
            last_evaluated_key=start,
            consistent_read=True,
        )
    else:
        start = {"org_id": {"S": org_id}, "key_id": {"S": after}} if after else None
        results = SecurityKey.query(
            org_id, limit=limit, page_size=limit, last_evaluated_key=start, consistent_read=True
        )
    found = list(results)
    last = results.last_evaluated_key
    return pagination.Page(items=found, next=pagination.encode(last["key_id"]["S"]) if last else None)


def search_org_keys(
    *, org_id: str, search: str, limit: int, after: dict[str, str] | None
) -> pagination.Page[SecurityKey]:
    """One page of the keys of the members whose user ID starts with ``search``, by owner then
    key ID: a condition on the by-member index's sort key, so one query whatever the size of the
    organization. ``after`` (and the cursor returned) holds both the owner and the key where a page
    ended, as the index needs both to resume."""
    start = (
        {"org_id": {"S": org_id}, "key_id": {"S": after["key_id"]}, "user_id": {"S": after["user_id"]}}
        if after
        else None
    )
    results = SecurityKey.by_member.query(
        org_id,
        SecurityKey.user_id.startswith(search),
        limit=limit,
        page_size=limit,
        last_evaluated_key=start,
        consistent_read=True,
    )
    found = list(results)
    last = results.last_evaluated_key
    return pagination.Page(
        items=found,
        next=pagination.encode_fields({"user_id": last["user_id"]["S"], "key_id": last["key_id"]["S"]})
        if last
        else None,
    )


def _noncompliant_keys(
    *,
    org_id: str,
    limit: int,
    after: str | None,
    user_id: str | None,
    policy: AuthenticatorPolicy,
) -> pagination.Page[SecurityKey]:
    # Compliance depends on the policy, so no index can hold it: read pages of keys until a page
    # of answers is full. The cursor is the last key examined, so the next page resumes there.
    found: list[SecurityKey] = []
    cursor = after
    while True:
        page = list_org_keys(org_id=org_id, limit=max(limit, 100), after=cursor, user_id=user_id)
        for key in page.items:
            # Falls short of the policy: a key its grace period spares too, which the admin must
            # see replaced before the period ends (it shows ``counts_until``).
            if not authenticator_policy.verdict(policy, KeyFacts.of(key)).compliant:
                found.append(key)
                if len(found) == limit:
                    return pagination.Page(items=found, next=pagination.encode(key.key_id))
        if page.next is None:
            return pagination.Page(items=found, next=None)
        cursor = page.items[-1].key_id


def owners_of(*, org_id: str, found: list[SecurityKey]) -> dict[str, Member]:
    """The members who own these keys, read in one batch."""
    user_ids = sorted({key.user_id for key in found})
    return {member.user_id: member for member in Member.batch_get([(org_id, user_id) for user_id in user_ids])}


def delete_by_admin(*, caller: Caller, user_id: str, key_id: str) -> None:
    """``DELETE /org/members/{user_id}/mfa/keys/{id}``: an admin removes a member's key.

    The last-key rule is the member's own (:func:`remove_key`): while the organization
    enforces MFA, a member's last key stays (409 LastKeyRequired), the admin's own included. To
    take everything of a member's away, an admin offboards them.
    """
    key_id = check_key_id(key_id)
    if not 0 < len(user_id) <= 255:  # longer cannot be an ID token's sub; DynamoDB would refuse it as a key
        raise KeyNotFound("No such security key for this member.")
    remove_key(caller=caller, user_id=user_id, key_id=key_id, by="admin")
