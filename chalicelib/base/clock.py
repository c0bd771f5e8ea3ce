"""Time as keyward stores and shows it: aware UTC datetimes, ISO 8601 with a ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    """The contract's timestamp form, ``2026-11-27T18:41:06Z``; ``None`` stays ``None``."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
