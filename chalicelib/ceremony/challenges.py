"""WebAuthn challenges: random, bound to one session, user and ceremony, expiring, single use.

A challenge is used up by one conditional delete that also checks the binding and the expiry,
so of two requests racing with the same challenge exactly one gets it. A ceremony step reads
its challenge together with its session (:func:`read`), checks it (:func:`check`), and deletes
it in the same transaction that records the ceremony's outcome (:func:`use_up`); a refused
ceremony deletes it with the refusal's audit event (:func:`discard`).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any

from pynamodb.exceptions import DeleteError
from pynamodb.expressions.condition import Condition

from chalicelib.base import audit, clock
from chalicelib.base.config import settings
from chalicelib.base.context import AlsoRead, Caller
from chalicelib.base.errors import (
    ChallengeExpired,
    ChallengeMismatch,
    ChallengeNotFound,
    MalformedRequest,
)
from chalicelib.base.models import Challenge, Session
from chalicelib.base.storage import (
    ConditionsFailed,
    Item,
    LabelledWrite,
    condition_failed,
    transaction,
)

LABEL = "challenge"

_CHALLENGE_ID = re.compile(r"[A-Za-z0-9_-]{22}")
# How long an expired challenge lingers before DynamoDB's TTL may remove it.
_HOUSEKEEPING_DELAY = timedelta(hours=1)


class Ceremony(str, Enum):
    REGISTRATION = "registration"
    AUTHENTICATION = "authentication"
    # A step-up of an active session: its own kind, so an MFA login's challenge cannot serve it.
    REAUTHENTICATION = "reauthentication"


@dataclass(frozen=True)
class IssuedChallenge:
    challenge_id: str
    challenge: bytes


def issue(*, ceremony: Ceremony, session: Session) -> IssuedChallenge:
    """Store a fresh 256-bit challenge for one ceremony of this session."""
    issued_at = clock.now()
    expires_at = issued_at + timedelta(seconds=settings().challenge_lifetime_seconds)
    challenge = Challenge(
        secrets.token_urlsafe(16),
        challenge=secrets.token_bytes(32),
        ceremony=ceremony.value,
        org_id=session.org_id,
        user_id=session.user_id,
        session_id=session.session_id,
        expires_at=expires_at,
        ttl=expires_at + _HOUSEKEEPING_DELAY,
    )
    challenge.save(condition=Challenge.challenge_id.does_not_exist())
    return IssuedChallenge(challenge_id=challenge.challenge_id, challenge=challenge.challenge)


def check_id(challenge_id: object) -> str:
    """A challenge ID as the client sent it, refused early if it cannot be one of ours."""
    if not isinstance(challenge_id, str) or not _CHALLENGE_ID.fullmatch(challenge_id):
        raise MalformedRequest("'challenge_id' must be the ID returned with the options.")
    return challenge_id


def _usable(*, ceremony: Ceremony, session: Session) -> Condition:
    return (
        Challenge.challenge_id.exists()
        & (Challenge.ceremony == ceremony.value)
        & (Challenge.org_id == session.org_id)
        & (Challenge.user_id == session.user_id)
        & (Challenge.session_id == session.session_id)
        & (Challenge.expires_at > clock.now())
    )


def read(challenge_id: str) -> AlsoRead:
    """Read the challenge with the session (``Caller.read[challenges.LABEL]``)."""
    return AlsoRead(LABEL, Challenge, challenge_id)


def read_with(read: Mapping[str, Any], challenge_id: str) -> Challenge | None:
    """The challenge a caller read with its session, or (for a caller that did not) read now."""
    if LABEL in read:
        return read[LABEL]
    try:
        return Challenge.get(challenge_id, consistent_read=True)
    except Challenge.DoesNotExist:
        return None


def check(*, challenge: Challenge | None, ceremony: Ceremony, session: Session) -> bytes:
    """The challenge's bytes, if it was issued to this session for this ceremony and has not
    expired; it stays stored until :func:`use_up` deletes it with the ceremony's outcome.

    Raises:
        ChallengeNotFound: unknown, or already used (a replay).
        ChallengeExpired: older than the challenge lifetime.
        ChallengeMismatch: issued to another session, user or ceremony; it stays usable for them.
    """
    if challenge is None:
        raise ChallengeNotFound("The challenge is unknown or was already used; request new options.")
    if challenge.expires_at <= clock.now():
        raise ChallengeExpired("The challenge has expired; request new options.")
    if (challenge.ceremony, challenge.org_id, challenge.user_id, challenge.session_id) != (
        ceremony.value,
        session.org_id,
        session.user_id,
        session.session_id,
    ):
        raise ChallengeMismatch("The challenge was issued for another session or ceremony.")
    return challenge.challenge


def use_up(write: LabelledWrite, *, challenge_id: str, ceremony: Ceremony, session: Session) -> None:
    """Delete the challenge in ``write``, on the conditions :func:`check` looked at: of two
    transactions with one challenge, only one commits (the other fails on ``Item.CHALLENGE``)."""
    write.delete(Item.CHALLENGE, Challenge(challenge_id), condition=_usable(ceremony=ceremony, session=session))


def discard(*, caller: Caller, challenge_id: str, ceremony: Ceremony, action: str, reason: str) -> None:
    """A refused ceremony: its challenge is used up with the refusal's audit event (``action``,
    with the refusal's reason code); a challenge that was not this session's (or is gone already)
    is left alone, and the event saved anyway."""
    session = caller.session
    refusal = audit.event(
        org_id=session.org_id,
        actor=caller.actor,
        action=action,
        target=session.user_id,
        user_id=session.user_id,
        client=caller.client,
        details={"reason": reason},
        spread_over=caller.org,
    )
    try:
        with transaction() as write:
            use_up(write, challenge_id=challenge_id, ceremony=ceremony, session=session)
            write.save(Item.AUDIT, refusal)
    except ConditionsFailed:
        refusal.save()


def consume(*, challenge_id: str, ceremony: Ceremony, session: Session) -> bytes:
    """Use up a challenge and return its bytes — once, for the session and ceremony it was issued to.

    Raises:
        ChallengeNotFound: unknown, or already used (a replay).
        ChallengeExpired: older than the challenge lifetime.
        ChallengeMismatch: issued to another session, user or ceremony; it stays usable for them.
    """
    condition = _usable(ceremony=ceremony, session=session)
    try:
        # PynamoDB's Model.delete cannot return the deleted item; the table connection can,
        # and that makes "check, use and delete" a single atomic request.
        response = Challenge._get_connection().delete_item(challenge_id, condition=condition, return_values="ALL_OLD")
    except DeleteError as error:
        if condition_failed(error):
            raise _why_refused(challenge_id=challenge_id) from None
        raise
    return Challenge.from_raw_data(response["Attributes"]).challenge


def _why_refused(*, challenge_id: str) -> Exception:
    """Name the reason a consume failed; only for the error message, never to decide."""
    try:
        challenge = Challenge.get(challenge_id, consistent_read=True)
    except Challenge.DoesNotExist:
        return ChallengeNotFound("The challenge is unknown or was already used; request new options.")
    if challenge.expires_at <= clock.now():
        return ChallengeExpired("The challenge has expired; request new options.")
    return ChallengeMismatch("The challenge was issued for another session or ceremony.")
