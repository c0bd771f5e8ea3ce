"""How the API shows users, organizations and sessions (the contract's JSON bodies)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.base import clock

if TYPE_CHECKING:
    from chalicelib.base.models import Member, Organization, Session


def user_body(member: Member) -> dict[str, Any]:
    return {"id": member.user_id, "name": member.name, "email": member.email, "admin": bool(member.admin)}


def org_body(org: Organization) -> dict[str, Any]:
    return {"id": org.org_id, "mfa_enforced": bool(org.mfa_enforced)}


def login_body(*, token: str, session: Session, org: Organization, member: Member) -> dict[str, Any]:
    return {
        "token": token,
        "state": session.state,
        "expires_at": clock.iso(session.expires_at),
        "user": user_body(member),
        "org": org_body(org),
    }


def session_body(session: Session, *, current: str) -> dict[str, Any]:
    return {
        "id": session.session_id,
        "state": session.state,
        "created_at": clock.iso(session.created_at),
        "expires_at": clock.iso(session.expires_at),
        "last_seen_at": clock.iso(session.last_seen_at),
        "source_ip": session.source_ip,
        "user_agent": session.user_agent,
        "current": session.session_id == current,
    }
