"""An organization's audit events as stored, whichever shards and days they are on."""

from __future__ import annotations

from chalicelib.base.models import AuditEvent


def logged_events(org_id: str) -> list[AuditEvent]:
    """Every stored event of the organization, oldest first (the log's order, read back to front)."""
    found = AuditEvent.scan(AuditEvent.org_id == org_id, consistent_read=True)
    return sorted(found, key=lambda entry: entry.event_key)
