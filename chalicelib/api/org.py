"""Organization settings → Multi-factor authentication: for the organization's admins only."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from chalice import Blueprint, Response

from chalicelib import audit, backup, clock, enforcement, keys, members, pagination, sessions
from chalicelib.api.http import caller_of, json_body, only_fields, route
from chalicelib.errors import AdminRequired, InvalidTimeRange, MalformedRequest
from chalicelib.models import Invalidation
from chalicelib.sessions import Caller

org = Blueprint(__name__)


def _admin() -> Caller:
    caller = caller_of(org.current_request)
    if not caller.is_admin:
        raise AdminRequired("Only the organization's admins may do this.")
    return caller


def _query(name: str) -> str | None:
    return (org.current_request.query_params or {}).get(name)


def _invalidation_body(invalidation: Invalidation | None) -> dict[str, Any] | None:
    if invalidation is None:
        return None
    return {
        "state": invalidation.state,
        "sessions_ended": invalidation.sessions_ended,
        "started_at": clock.iso(invalidation.started_at),
        "finished_at": clock.iso(invalidation.finished_at),
    }


def _status_body(status: enforcement.MfaStatus) -> dict[str, Any]:
    return {
        "enforced": bool(status.org.mfa_enforced),
        "enforced_at": clock.iso(status.org.enforced_at),
        "enforced_by": status.org.enforced_by,
        "members_total": status.members_total,
        "members_compliant": status.members_compliant,
        "invalidation": _invalidation_body(status.org.invalidation),
    }


@route(org, "/org/mfa", methods=["GET"])
def mfa_status() -> dict[str, Any]:
    return _status_body(enforcement.status(org_id=_admin().org.org_id))


@route(org, "/org/mfa", methods=["PUT"])
def set_enforcement() -> dict[str, Any]:
    caller = _admin()
    body = json_body(org.current_request)
    only_fields(body, {"enforced"})
    enforced = body.get("enforced")
    if not isinstance(enforced, bool):
        raise MalformedRequest("'enforced' must be true or false.")
    return _status_body(enforcement.set_enforced(caller=caller, enforced=enforced))


@route(org, "/org/members", methods=["GET"])
def list_members() -> dict[str, Any]:
    caller = _admin()
    page = members.list_members(org_id=caller.org.org_id, limit=pagination.limit_from(_query("limit")),
                                after=pagination.decode(_query("next")))
    return {"members": [members.describe(member) for member in page.items], "next": page.next}


@route(org, "/org/mfa/keys", methods=["GET"])
def list_keys() -> dict[str, Any]:
    caller = _admin()
    org_id = caller.org.org_id
    page = keys.list_org_keys(org_id=org_id, limit=pagination.limit_from(_query("limit")),
                              after=pagination.decode(_query("next")), user_id=_query("user_id") or None)
    owners = keys.owners_of(org_id=org_id, found=page.items)
    return {
        "keys": [
            {**keys.describe(key), "user": {"id": key.user_id, "name": owners[key.user_id].name if key.user_id in owners else ""}}
            for key in page.items
        ],
        "next": page.next,
    }


@route(org, "/org/members/{user_id}/mfa/keys/{key_id}", methods=["DELETE"], status=204)
def delete_member_key(user_id: str, key_id: str) -> None:
    keys.delete_by_admin(caller=_admin(), user_id=user_id, key_id=key_id)


@route(org, "/org/members/{user_id}/sessions", methods=["DELETE"], status=204)
def end_member_sessions(user_id: str) -> None:
    sessions.end_member_sessions(caller=_admin(), user_id=user_id)


@route(org, "/org/backup-credentials", methods=["POST"], status=201)
def create_backup_credentials() -> dict[str, Any]:
    issued = backup.create(caller=_admin())
    return {**backup.describe(issued.credential), "secret": issued.secret}


@route(org, "/org/backup-credentials", methods=["GET"])
def list_backup_credentials() -> dict[str, Any]:
    caller = _admin()
    return {"backup_credentials": [backup.describe(c) for c in backup.list_credentials(org_id=caller.org.org_id)]}


@route(org, "/org/backup-credentials/{key_id}", methods=["DELETE"], status=204)
def delete_backup_credentials(key_id: str) -> None:
    backup.delete(caller=_admin(), key_id=key_id)


def _moment(name: str) -> datetime | None:
    raw = _query(name)
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
        # A zone is required, and the moment must exist in UTC ("0001-01-01T00:00:00+01:00" does not).
        moment = moment.astimezone(timezone.utc) if moment.tzinfo is not None else None
    except (ValueError, OverflowError):
        moment = None
    if moment is None:
        raise InvalidTimeRange(f"'{name}' must be an ISO 8601 UTC timestamp such as 2026-11-27T18:41:06Z.")
    return moment


def _time_range() -> tuple[datetime | None, datetime | None]:
    since, until = _moment("since"), _moment("until")
    if since is not None and until is not None and since >= until:
        raise InvalidTimeRange("'since' must be before 'until'.")
    return since, until


@route(org, "/org/audit", methods=["GET"])
def audit_log() -> dict[str, Any]:
    caller = _admin()
    since, until = _time_range()
    page = audit.list_events(
        org_id=caller.org.org_id, limit=pagination.limit_from(_query("limit")), after=pagination.decode(_query("next")),
        action=_query("action") or None, user_id=_query("user_id") or None, since=since, until=until,
    )
    return {"events": [audit.describe(entry) for entry in page.items], "next": page.next}


@route(org, "/org/audit/export", methods=["GET"])
def export_audit_log() -> Response:
    """Long ranges as NDJSON, oldest first; ``Keyward-Next-Cursor`` continues where a full answer stops."""
    caller = _admin()
    since, until = _time_range()
    page = audit.list_events(
        org_id=caller.org.org_id, limit=audit.EXPORT_PAGE, after=pagination.decode(_query("next")),
        action=_query("action") or None, user_id=_query("user_id") or None, since=since, until=until,
        oldest_first=True,
    )
    lines = "".join(json.dumps(audit.describe(entry), separators=(",", ":")) + "\n" for entry in page.items)
    headers = {"Content-Type": "application/x-ndjson"}
    if page.next:
        headers["Keyward-Next-Cursor"] = page.next
    return Response(body=lines, status_code=200, headers=headers)
