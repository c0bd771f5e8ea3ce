"""Reading sessions as the tests look at them: every stored session of an organization, read
strongly consistent (a scan of the sessions table), rather than through the eventually consistent
index the code queries."""

from __future__ import annotations

from chalicelib.base.models import Session


def org_sessions(org_id: str) -> list[Session]:
    """Every stored session of the organization, oldest first."""
    found = [session for session in Session.scan(consistent_read=True) if session.org_id == org_id]
    return sorted(found, key=lambda session: session.session_id)
