"""Organization settings → Multi-factor authentication: for the organization's admins only."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypedDict

from chalice import Blueprint, Response

from chalicelib.access.actions import Action
from chalicelib.api import views
from chalicelib.api.http import caller_of, json_body, only_fields, route
from chalicelib.base import clock
from chalicelib.base.deferred import deferred
from chalicelib.base.errors import InvalidTimeRange, MalformedRequest

if TYPE_CHECKING:
    from chalicelib.base.context import Caller
    from chalicelib.base.models import Invalidation
    from chalicelib.org.enforcement import MfaStatus

# Each is loaded by the first request of its own kind, not by every cold start.
if TYPE_CHECKING:
    from chalicelib.access import backup, grace, sessions
    from chalicelib.base import audit, audit_csv, pagination, query_values
    from chalicelib.ceremony import authenticator_policy
    from chalicelib.keys import enrollment_passes, management, org_keys
    from chalicelib.org import enforcement, members, offboarding, policy_change, preview
else:
    audit = deferred("chalicelib.base.audit")
    audit_csv = deferred("chalicelib.base.audit_csv")
    authenticator_policy = deferred("chalicelib.ceremony.authenticator_policy")
    backup = deferred("chalicelib.access.backup")
    enforcement = deferred("chalicelib.org.enforcement")
    enrollment_passes = deferred("chalicelib.keys.enrollment_passes")
    grace = deferred("chalicelib.access.grace")
    management = deferred("chalicelib.keys.management")
    org_keys = deferred("chalicelib.keys.org_keys")
    members = deferred("chalicelib.org.members")
    offboarding = deferred("chalicelib.org.offboarding")
    pagination = deferred("chalicelib.base.pagination")
    policy_change = deferred("chalicelib.org.policy_change")
    preview = deferred("chalicelib.org.preview")
    query_values = deferred("chalicelib.base.query_values")
    sessions = deferred("chalicelib.access.sessions")

org = Blueprint(__name__)

# Where a page of keys searched by owner ends: the by-member index resumes at both.
SEARCH_CURSOR = ("user_id", "key_id")


def _admin() -> Caller:
    return caller_of(org.current_request, action=Action.READ_ORG)


def _admin_changing() -> Caller:
    return caller_of(org.current_request, action=Action.CHANGE_ORG)


def _query(name: str) -> str | None:
    params: Mapping[str, str] = org.current_request.query_params or {}
    return params.get(name)


def _invalidation_body(invalidation: Invalidation | None) -> dict[str, Any] | None:
    if invalidation is None:
        return None
    return {
        "state": invalidation.state,
        "sessions_ended": invalidation.sessions_ended,
        "started_at": clock.iso(invalidation.started_at),
        "finished_at": clock.iso(invalidation.finished_at),
    }


def _status_body(status: MfaStatus) -> dict[str, Any]:
    return {
        "enforced": bool(status.org.mfa_enforced),
        "enforced_at": clock.iso(status.org.enforced_at),
        "enforced_by": status.org.enforced_by,
        "members_total": status.members_total,
        "members_compliant": status.members_compliant,
        "compliance": {"state": status.compliance_state},
        "grace_period_hours": int(status.org.grace_period_hours or 0) if status.org.mfa_enforced else 0,
        "registration_due_at": clock.iso(grace.registration_due_at(status.org)),
        "invalidation": _invalidation_body(status.org.invalidation),
        "enrollment": enrollment_passes.policy_of(status.org).value,
    }


@route(org, "/org/mfa", methods=["GET"])
def mfa_status() -> dict[str, Any]:
    return _status_body(enforcement.status(org=_admin().org))


@route(org, "/org/mfa", methods=["PUT"])
def set_enforcement() -> dict[str, Any]:
    caller = _admin_changing()
    body = json_body(org.current_request)
    only_fields(body, {"enforced", "enrollment", "grace_period_hours", "without_backup_credentials"})
    if not body:
        raise MalformedRequest("Give 'enforced', 'grace_period_hours', 'enrollment' or several.")
    enforced = body.get("enforced")
    if "enforced" in body and not isinstance(enforced, bool):
        raise MalformedRequest("'enforced' must be true or false.")
    hours = grace.check_hours(body["grace_period_hours"]) if "grace_period_hours" in body else None
    if hours is not None and enforced is False:
        raise MalformedRequest("'grace_period_hours' applies to an enforcement: it cannot come with 'enforced': false.")
    without_backup_credentials = body.get("without_backup_credentials", False)
    if not isinstance(without_backup_credentials, bool):
        raise MalformedRequest("'without_backup_credentials' must be true or false.")
    if without_backup_credentials and enforced is not True:
        raise MalformedRequest("'without_backup_credentials' applies to an enforcement: send it with 'enforced': true.")
    change = (
        enrollment_passes.policy_change(caller=caller, policy=enrollment_passes.check_policy(body["enrollment"]))
        if "enrollment" in body
        else None
    )
    if isinstance(enforced, bool):
        return _status_body(
            enforcement.set_enforced(
                caller=caller,
                enforced=enforced,
                grace_period_hours=hours,
                without_backup_credentials=without_backup_credentials,
                along=change,
            )
        )
    if hours is not None:
        return _status_body(enforcement.change_grace_period(caller=caller, hours=hours, along=change))
    return _status_body(enforcement.change_alone(org=caller.org, change=change))


@route(org, "/org/members", methods=["GET"])
def list_members() -> dict[str, Any]:
    caller = _admin()
    limit, after, mfa = pagination.limit_from(_query("limit")), pagination.decode(_query("next")), _query("mfa")
    search = query_values.search_filter(_query("search"))
    if mfa is not None:
        page = members.list_members_by_coverage(
            org_id=caller.org.org_id, bucket=members.check_bucket(mfa), limit=limit, after=after, search=search
        )
    else:
        page = members.list_members(org_id=caller.org.org_id, limit=limit, after=after, search=search)
    seen = members.last_sign_ins(org_id=caller.org.org_id, members=page.items)
    return {
        "members": [members.describe(member, org=caller.org, last_sign_ins=seen) for member in page.items],
        "next": page.next,
    }


@route(org, "/org/mfa/preview", methods=["GET"])
def preview_enforcement() -> dict[str, Any]:
    caller = _admin()
    found = preview.enforcement_preview(org=caller.org)
    return {
        "enforced": found.enforced,
        "members_total": found.counters.members_total,
        "members_with_key": found.counters.members_with_key,
        "members_without_key": found.counters.members_without_key,
        "members_without_key_first_page": [
            members.describe(member, org=caller.org, last_sign_ins=found.last_sign_ins)
            for member in found.first_without_key.items
        ],
        "next": found.first_without_key.next,
        "members_compliant": found.compliance.members_compliant,
        "compliance": {"state": found.compliance.state},
        "admins_total": found.counters.admins_total,
        "admins_without_key": found.counters.admins_without_key,
        "admins_without_key_first_page": [
            members.describe(member, org=caller.org, last_sign_ins=found.last_sign_ins)
            for member in found.first_admins_without_key
        ],
        "sessions_ending_estimate": found.sessions_ending_estimate,
    }


@route(org, "/org/members/{user_id}", methods=["DELETE"], status=204)
def offboard_member(user_id: str) -> None:
    offboarding.offboard(caller=_admin_changing(), user_id=user_id)


@route(org, "/org/mfa/keys", methods=["GET"])
def list_keys() -> dict[str, Any]:
    caller = _admin()
    org_id = caller.org.org_id
    policy = authenticator_policy.of(caller.org)
    compliant = _query("compliant")
    if compliant not in (None, "", "false"):
        raise MalformedRequest("'compliant' may only be 'false' (the keys that fall short of the policy).")
    search = query_values.search_filter(_query("search"))
    user_id = query_values.user_id_filter(_query("user_id"))
    limit = pagination.limit_from(_query("limit"))
    if search is not None:
        if user_id is not None or compliant == "false":
            raise MalformedRequest("'search' lists keys by the start of their owner's user ID: send it alone.")
        page = org_keys.search_org_keys(
            org_id=org_id,
            search=search,
            limit=limit,
            after=pagination.decode_fields(_query("next"), names=SEARCH_CURSOR),
        )
    else:
        page = org_keys.list_org_keys(
            org_id=org_id,
            limit=limit,
            after=pagination.decode(_query("next")),
            user_id=user_id,
            noncompliant_under=policy if compliant == "false" else None,
        )
    owners = org_keys.owners_of(org_id=org_id, found=page.items)
    return {
        "keys": [
            {
                **management.describe(key, policy=policy),
                "user": {"id": key.user_id, "name": owners[key.user_id].name if key.user_id in owners else ""},
            }
            for key in management.as_shown(page.items)
        ],
        "next": page.next,
    }


@route(org, "/org/mfa/policy", methods=["GET"])
def get_policy() -> dict[str, Any]:
    return {"policy": authenticator_policy.describe(authenticator_policy.of(_admin().org))}


@route(org, "/org/mfa/policy", methods=["PUT"])
def set_policy() -> dict[str, Any]:
    dry_run = _query("dry_run")
    if dry_run not in (None, "", "true", "false"):
        _admin()  # who asks is decided first: without a session the answer is 401, whatever the query
        raise MalformedRequest("'dry_run' must be 'true' or 'false'.")
    # Counting what a policy would do changes nothing; saving it is an admin change like any other.
    caller = _admin() if dry_run == "true" else _admin_changing()
    changed = policy_change.change(
        caller=caller,
        document=json_body(org.current_request),
        dry_run=dry_run == "true",
        after=pagination.decode(_query("next")),
        limit=pagination.limit_from(_query("limit")) if _query("limit") is not None else policy_change.AFFECTED_PAGE,
    )
    return {
        "policy": authenticator_policy.describe(changed.policy),
        "saved": changed.saved,
        "impact": policy_change.describe_impact(changed.impact),
    }


@route(org, "/org/members/{user_id}/mfa/keys/{key_id}", methods=["DELETE"], status=204)
def delete_member_key(user_id: str, key_id: str) -> None:
    org_keys.delete_by_admin(caller=_admin_changing(), user_id=user_id, key_id=key_id)


@route(org, "/org/members/{user_id}/sessions", methods=["DELETE"], status=204)
def end_member_sessions(user_id: str) -> None:
    sessions.end_member_sessions(caller=_admin_changing(), user_id=user_id)


@route(org, "/org/members/{user_id}/sessions", methods=["GET"])
def list_member_sessions(user_id: str) -> dict[str, Any]:
    caller = _admin()
    return {
        "sessions": [
            views.session_body(session, current=caller.session.session_id)
            for session in sessions.open_sessions_of_member(caller=caller, user_id=user_id)
        ]
    }


@route(org, "/org/backup-credentials", methods=["POST"], status=201)
def create_backup_credentials() -> dict[str, Any]:
    issued = backup.create(caller=caller_of(org.current_request, action=Action.CREATE_BACKUP_CREDENTIALS))
    return {**backup.describe(issued.credential), "secret": issued.secret}


@route(org, "/org/backup-credentials", methods=["GET"])
def list_backup_credentials() -> dict[str, Any]:
    caller = _admin()
    return {"backup_credentials": [backup.describe(c) for c in backup.list_credentials(org_id=caller.org.org_id)]}


@route(org, "/org/backup-credentials/{key_id}", methods=["DELETE"], status=204)
def delete_backup_credentials(key_id: str) -> None:
    backup.delete(caller=_admin_changing(), key_id=key_id)


def _moment(name: str) -> datetime | None:
    raw = _query(name)
    if raw is None:  # left out; given but empty is no moment, and refused below
        return None
    moment: datetime | None
    try:
        parsed = datetime.fromisoformat(raw)
        # A zone is required, and the moment must exist in UTC ("0001-01-01T00:00:00+01:00" does not).
        moment = parsed.astimezone(UTC) if parsed.tzinfo is not None else None
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


class _AuditFilters(TypedDict):
    action: str | None
    user_id: str | None
    actor: str | None
    since: datetime | None
    until: datetime | None


def _audit_filters() -> _AuditFilters:
    """The audit log's filters, the same for the listing and the export."""
    since, until = _time_range()
    return _AuditFilters(
        action=query_values.action_filter(_query("action")),
        user_id=query_values.user_id_filter(_query("user_id")),
        actor=query_values.actor_filter(_query("actor")),
        since=since,
        until=until,
    )


@route(org, "/org/audit", methods=["GET"])
def audit_log() -> dict[str, Any]:
    caller = _admin()
    filters = _audit_filters()
    page = audit.list_events(
        org=caller.org,
        limit=pagination.limit_from(_query("limit")),
        after=pagination.decode(_query("next")),
        **filters,
    )
    return {"events": [audit.describe(entry) for entry in page.items], "next": page.next}


@route(org, "/org/members/{user_id}/enrollment-passes", methods=["POST"], status=201)
def issue_enrollment_pass(user_id: str) -> dict[str, Any]:
    caller = _admin_changing()
    body = json_body(org.current_request) if org.current_request.raw_body else {}
    only_fields(body, {"lifetime_minutes"})
    lifetime = (
        enrollment_passes.check_lifetime(body["lifetime_minutes"])
        if "lifetime_minutes" in body
        else enrollment_passes.DEFAULT_LIFETIME_MINUTES
    )
    issued = enrollment_passes.issue(caller=caller, user_id=user_id, lifetime_minutes=lifetime)
    return {
        "id": issued.enrollment_pass.pass_id,
        "code": issued.code,
        "expires_at": clock.iso(issued.enrollment_pass.expires_at),
    }


@route(org, "/org/members/{user_id}/enrollment-passes", methods=["GET"])
def list_enrollment_passes(user_id: str) -> dict[str, Any]:
    passes = enrollment_passes.list_passes(caller=_admin(), user_id=user_id)
    return {"enrollment_passes": [enrollment_passes.describe(enrollment_pass) for enrollment_pass in passes]}


@route(org, "/org/members/{user_id}/enrollment-passes/{pass_id}", methods=["DELETE"], status=204)
def revoke_enrollment_pass(user_id: str, pass_id: str) -> None:
    enrollment_passes.revoke(caller=_admin_changing(), user_id=user_id, pass_id=pass_id)


# What an export is written as: the format's media type.
_EXPORT_FORMATS = {"ndjson": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


@route(org, "/org/audit/export", methods=["GET"])
def export_audit_log() -> Response:
    """Long ranges as NDJSON or CSV, oldest first; ``Keyward-Next-Cursor`` continues where a full answer stops."""
    caller = _admin()
    export_format = _query("format") or "ndjson"
    if export_format not in _EXPORT_FORMATS:
        raise MalformedRequest("'format' must be 'ndjson' or 'csv'.")
    filters = _audit_filters()
    after = pagination.decode(_query("next"))
    page = audit.list_events(org=caller.org, limit=audit.EXPORT_PAGE, after=after, oldest_first=True, **filters)
    events = [audit.describe(entry) for entry in page.items]
    if export_format == "csv":
        body = audit_csv.rows(events, header=after is None)
    else:
        body = "".join(json.dumps(event, separators=(",", ":")) + "\n" for event in events)
    headers: dict[str, str | list[str]] = {"Content-Type": _EXPORT_FORMATS[export_format]}
    if page.next:
        headers["Keyward-Next-Cursor"] = page.next
    return Response(body=body, status_code=200, headers=headers)
