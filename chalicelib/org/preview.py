"""What enforcing MFA now would do to an organization, without changing anything: read from the
coverage and compliance counters, one page of the coverage index and one of the admins without a
key, so it costs the same for 10 members or 100,000."""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.base import pagination
from chalicelib.base.models import Member, Organization
from chalicelib.counters import compliance, coverage
from chalicelib.counters.compliance import Compliance
from chalicelib.counters.coverage import Bucket, Counters
from chalicelib.org import members

FIRST_PAGE = 50
# Admins who would have to register a key are listed whole up to this many (organizations have few).
FIRST_ADMINS = 50


@dataclass(frozen=True)
class EnforcementPreview:
    enforced: bool
    counters: Counters
    # Who would have to register a key (the first of them; the rest through GET /org/members?mfa=none).
    first_without_key: pagination.Page[Member]
    compliance: Compliance
    # Admins without a key (the first of them): enforcing leaves them needing a key too, and an
    # admin cannot enforce without one.
    first_admins_without_key: list[Member]
    # Enforcing ends every session but the enforcing admin's; the organization's session count is
    # not kept, so this is its member count: each member signed in within a session's lifetime
    # holds about one.
    sessions_ending_estimate: int
    # When the members of both lists last signed in (one batch read for both).
    last_sign_ins: members.LastSignIns


def enforcement_preview(*, org: Organization) -> EnforcementPreview:
    counters = coverage.counters_of(org)
    first = members.list_members_by_coverage(org_id=org.org_id, bucket=Bucket.NONE, limit=FIRST_PAGE, after=None)
    admins = members.list_admins_without_key(org_id=org.org_id, limit=FIRST_ADMINS)
    return EnforcementPreview(
        enforced=bool(org.mfa_enforced),
        counters=counters,
        first_without_key=first,
        compliance=compliance.of(org),
        first_admins_without_key=admins,
        sessions_ending_estimate=max(counters.members_total - 1, 0),
        last_sign_ins=members.last_sign_ins(org_id=org.org_id, members=[*first.items, *admins]),
    )
