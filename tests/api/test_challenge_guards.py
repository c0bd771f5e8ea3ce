"""The challenge rule's guards, each tested on both sides: a challenge is bound to one
organization, user, session and ceremony, by equality — fixed IDs just below and just above the
real ones must both miss, so that a condition weakened to ``<=`` or ``>=`` fails a test instead of
passing by the chance of random IDs. Also its size, its lifetime and its housekeeping TTL; the
same rules in the check a ceremony makes before it verifies a response, the challenge read with
the session, and a refused ceremony that met another session's challenge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.base import clock
from chalicelib.base.config import settings
from chalicelib.base.errors import (
    ChallengeExpired,
    ChallengeMismatch,
    ChallengeNotFound,
)
from chalicelib.base.models import Challenge, Session
from chalicelib.ceremony import challenges
from chalicelib.ceremony.challenges import Ceremony
from tests.support.audit_log import logged_events

ORG, USER, SESSION = "org-m", "user-m", "m" * 22
# Sessions that differ in one binding, with IDs just below and just above the real one's.
OTHER_SESSIONS = [
    {"org_id": "org-a"},
    {"org_id": "org-z"},
    {"user_id": "user-a"},
    {"user_id": "user-z"},
    {"session_id": "a" * 22},
    {"session_id": "z" * 22},
]


def _session(*, org_id: str = ORG, user_id: str = USER, session_id: str = SESSION) -> Session:
    return Session.of_member(session_id, org_id=org_id, user_id=user_id)


@pytest.fixture
def issued() -> challenges.IssuedChallenge:
    return challenges.issue(ceremony=Ceremony.AUTHENTICATION, session=_session())


@pytest.mark.parametrize("other", OTHER_SESSIONS, ids=lambda other: "-".join(f"{k}={v[:6]}" for k, v in other.items()))
def test_a_challenge_is_refused_to_every_other_org_user_and_session_below_and_above(issued, other):
    with pytest.raises(ChallengeMismatch):
        challenges.consume(
            challenge_id=issued.challenge_id, ceremony=Ceremony.AUTHENTICATION, session=_session(**other)
        )

    # Still there, and still usable by the session it was issued to.
    assert (
        challenges.consume(challenge_id=issued.challenge_id, ceremony=Ceremony.AUTHENTICATION, session=_session())
        == issued.challenge
    )


@pytest.mark.parametrize(
    "issued_for,used_for",
    [
        (Ceremony.AUTHENTICATION, Ceremony.REGISTRATION),
        (Ceremony.REGISTRATION, Ceremony.AUTHENTICATION),
    ],
)
def test_a_challenge_is_refused_to_the_other_ceremony_either_way(issued_for, used_for):
    issued = challenges.issue(ceremony=issued_for, session=_session())

    with pytest.raises(ChallengeMismatch):
        challenges.consume(challenge_id=issued.challenge_id, ceremony=used_for, session=_session())
    assert (
        challenges.consume(challenge_id=issued.challenge_id, ceremony=issued_for, session=_session())
        == issued.challenge
    )


def test_a_challenge_is_used_once(issued):
    challenges.consume(challenge_id=issued.challenge_id, ceremony=Ceremony.AUTHENTICATION, session=_session())

    with pytest.raises(ChallengeNotFound):
        challenges.consume(challenge_id=issued.challenge_id, ceremony=Ceremony.AUTHENTICATION, session=_session())


def test_a_challenge_is_32_random_bytes_under_a_22_character_id():
    issued = [challenges.issue(ceremony=Ceremony.AUTHENTICATION, session=_session()) for _ in range(3)]

    assert all(len(one.challenge) == 32 for one in issued)
    assert all(len(one.challenge_id) == 22 for one in issued)
    assert len({one.challenge for one in issued}) == 3
    stored = Challenge.get(issued[0].challenge_id, consistent_read=True)
    assert stored.challenge == issued[0].challenge


def test_a_challenge_expires_after_its_lifetime_and_its_ttl_comes_an_hour_later(monkeypatch):
    issued_at = datetime(2026, 11, 30, 6, 0, 0, tzinfo=UTC)
    monkeypatch.setattr(clock, "now", lambda: issued_at)
    issued = challenges.issue(ceremony=Ceremony.AUTHENTICATION, session=_session())

    stored = Challenge.get(issued.challenge_id, consistent_read=True)
    expires_at = issued_at + timedelta(seconds=settings().challenge_lifetime_seconds)
    assert stored.expires_at == expires_at
    # DynamoDB's TTL only tidies up, and never before the challenge has expired.
    assert stored.ttl == expires_at + timedelta(hours=1)


@pytest.mark.parametrize("after_issue,usable", [(-1, True), (0, False), (1, False)])
def test_a_challenge_is_usable_until_the_instant_it_expires(monkeypatch, after_issue, usable):
    issued_at = datetime(2026, 11, 30, 6, 0, 0, tzinfo=UTC)
    monkeypatch.setattr(clock, "now", lambda: issued_at)
    issued = challenges.issue(ceremony=Ceremony.AUTHENTICATION, session=_session())
    expiry = issued_at + timedelta(seconds=settings().challenge_lifetime_seconds)
    monkeypatch.setattr(clock, "now", lambda: expiry + timedelta(microseconds=after_issue))

    if usable:
        assert (
            challenges.consume(challenge_id=issued.challenge_id, ceremony=Ceremony.AUTHENTICATION, session=_session())
            == issued.challenge
        )
    else:
        with pytest.raises(ChallengeExpired):
            challenges.consume(challenge_id=issued.challenge_id, ceremony=Ceremony.AUTHENTICATION, session=_session())


def test_a_challenge_id_is_taken_as_issued_and_anything_else_is_malformed(issued):
    from chalicelib.base.errors import MalformedRequest

    assert challenges.check_id(issued.challenge_id) == issued.challenge_id
    for wrong in (None, 7, "", issued.challenge_id[:-1], issued.challenge_id + "A", "!" * 22):
        with pytest.raises(MalformedRequest):
            challenges.check_id(wrong)


# --- the check before a ceremony, which names a refusal before the ceremony is verified ----------


@pytest.mark.parametrize("other", OTHER_SESSIONS, ids=lambda other: "-".join(f"{k}={v[:6]}" for k, v in other.items()))
def test_the_check_before_a_ceremony_refuses_every_other_org_user_and_session_below_and_above(issued, other):
    challenge = Challenge.get(issued.challenge_id, consistent_read=True)

    with pytest.raises(ChallengeMismatch):
        challenges.check(challenge=challenge, ceremony=Ceremony.AUTHENTICATION, session=_session(**other))
    with pytest.raises(ChallengeMismatch):
        challenges.check(challenge=challenge, ceremony=Ceremony.REGISTRATION, session=_session())
    assert (
        challenges.check(challenge=challenge, ceremony=Ceremony.AUTHENTICATION, session=_session()) == issued.challenge
    )


@pytest.mark.parametrize("after_issue,usable", [(-1, True), (0, False), (1, False)])
def test_the_check_before_a_ceremony_passes_until_the_instant_the_challenge_expires(monkeypatch, after_issue, usable):
    issued_at = datetime(2026, 11, 30, 6, 0, 0, tzinfo=UTC)
    monkeypatch.setattr(clock, "now", lambda: issued_at)
    issued = challenges.issue(ceremony=Ceremony.AUTHENTICATION, session=_session())
    challenge = Challenge.get(issued.challenge_id, consistent_read=True)
    monkeypatch.setattr(clock, "now", lambda: challenge.expires_at + timedelta(microseconds=after_issue))

    if usable:
        assert (
            challenges.check(challenge=challenge, ceremony=Ceremony.AUTHENTICATION, session=_session())
            == issued.challenge
        )
    else:
        with pytest.raises(ChallengeExpired):
            challenges.check(challenge=challenge, ceremony=Ceremony.AUTHENTICATION, session=_session())


def test_the_check_before_a_ceremony_calls_a_challenge_that_is_not_there_not_found():
    with pytest.raises(ChallengeNotFound):
        challenges.check(challenge=None, ceremony=Ceremony.AUTHENTICATION, session=_session())


def test_a_challenge_read_with_the_session_is_taken_as_read_and_otherwise_read_now(issued):
    stored = Challenge.get(issued.challenge_id, consistent_read=True)

    # The session's read found no challenge (used up meanwhile): that answer stands.
    assert challenges.read_with({challenges.LABEL: None}, issued.challenge_id) is None
    assert challenges.read_with({challenges.LABEL: stored}, "x" * 22) is stored
    assert challenges.read_with({}, issued.challenge_id).challenge == issued.challenge
    assert challenges.read_with({}, "x" * 22) is None


def test_a_refused_ceremony_with_another_sessions_challenge_is_audited_and_leaves_it_usable(issued):
    from types import SimpleNamespace

    from chalicelib.base import audit

    other = SimpleNamespace(
        org=None, session=_session(session_id="a" * 22), actor=audit.member_actor(USER), client=audit.Client()
    )

    challenges.discard(
        caller=other,
        challenge_id=issued.challenge_id,
        ceremony=Ceremony.AUTHENTICATION,
        action="mfa.failed",
        reason="CeremonyFailed",
    )

    [event] = logged_events(ORG)
    assert (event.action, event.details["reason"]) == ("mfa.failed", "CeremonyFailed")
    assert (
        challenges.consume(challenge_id=issued.challenge_id, ceremony=Ceremony.AUTHENTICATION, session=_session())
        == issued.challenge
    )
