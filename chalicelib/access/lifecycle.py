"""Why a session's token no longer works, even after its item is gone.

Session IDs carry the session's creation time: 6 bytes of milliseconds since the epoch, then
10 random bytes (22 characters of URL-safe base64, the shape session IDs always had). When a
token names a session that no longer exists, the organization's latest enforcement time and the
session lifetime still tell the member why: a session started before the enforcement was ended
by it (``SessionEndedByEnforcement``), one past its lifetime expired — no record per session.

What this tells someone holding a made-up token is only that the organization enforced MFA at
some time; the token itself, and every ended session, stays unusable. Session IDs issued before
they carried a time (random ones, gone within a session lifetime) may be given a wrong reason.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from datetime import UTC, datetime, timedelta

from chalicelib.base import clock
from chalicelib.base.config import settings
from chalicelib.base.errors import (
    InvalidToken,
    NotAuthenticated,
    SessionEndedByEnforcement,
    SessionExpired,
)
from chalicelib.base.models import Organization

_TIME_BYTES = 6
_RANDOM_BYTES = 10


def new_session_id(started: datetime) -> str:
    """A session ID that carries ``started`` (to the millisecond) and 80 random bits."""
    millis = int(started.timestamp() * 1000)
    raw = millis.to_bytes(_TIME_BYTES, "big") + secrets.token_bytes(_RANDOM_BYTES)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def started_at(session_id: str) -> datetime | None:
    """The creation time a session ID carries, or None if it is not one of this shape."""
    try:
        raw = base64.urlsafe_b64decode(session_id + "=" * (-len(session_id) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != _TIME_BYTES + _RANDOM_BYTES:
        return None
    try:
        return datetime.fromtimestamp(int.from_bytes(raw[:_TIME_BYTES], "big") / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        # Six bytes of milliseconds reach past the year 9999, where no datetime goes: a made-up ID.
        return None


def latest_enforcement(org: Organization) -> datetime | None:
    return org.last_enforced_at or org.enforced_at


def missing_session_refusal(*, session_id: str, org: Organization | None) -> NotAuthenticated:
    """The refusal for a token whose session item does not exist (any more)."""
    started = started_at(session_id)
    if org is None or started is None or started > clock.now():
        return InvalidToken("The session does not exist or has ended.")
    if started + timedelta(seconds=settings().session_lifetime_seconds) <= clock.now():
        return SessionExpired("The session has expired; sign in again.")
    enforced = latest_enforcement(org)
    if enforced is not None and started < enforced and session_id != org.enforcing_session_id:
        return SessionEndedByEnforcement("The organization now enforces MFA; sign in again.")
    return InvalidToken("The session does not exist or has ended.")
