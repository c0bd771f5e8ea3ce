"""The stream function's bulk clean-up: many invocations, redelivery, bad records, DynamoDB faults."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

import pytest
from pynamodb.exceptions import PutError

from app import end_sessions_on_enforcement
from chalicelib.background import invalidation
from chalicelib.base import clock
from chalicelib.base.config import settings
from chalicelib.base.models import (
    SESSION_SHARDS,
    Invalidation,
    Organization,
    Session,
    member_session_key,
    session_shard,
)
from devstack.stream import StreamPump
from tests.support.sessions import org_sessions

ORG = "acme"


class OnePage:
    """A Lambda context with time for one page of deletions: the next check says time is up."""

    invocations = 0

    def __init__(self) -> None:
        OnePage.invocations += 1
        self._checks = 0

    def get_remaining_time_in_millis(self) -> int:
        self._checks += 1
        return 900_000 if self._checks == 1 else 0


class Plenty:
    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def _populate(count: int, *, generation: int = 0) -> None:
    started = clock.now()
    with Session.batch_write() as batch:
        for i in range(count):
            batch.save(
                Session.of_member(
                    f"s{i:06d}",
                    org_id=ORG,
                    token_hash="x",
                    state="active",
                    user_id=f"u{i}",
                    created_at=started,
                    expires_at=started + timedelta(hours=1),
                    ttl=started + timedelta(days=1),
                    enforcement_generation=generation,
                )
            )


def _enforce_as_the_api(*, spare: str | None = None) -> None:
    org = Organization.get(ORG, consistent_read=True)
    generation = org.enforcement_generation + 1
    now = clock.now()
    org.update(
        actions=[
            Organization.mfa_enforced.set(True),
            Organization.enforced_at.set(now),
            Organization.enforced_by.set("alice"),
            Organization.enforcing_session_id.set(spare) if spare else Organization.enforcing_session_id.remove(),
            Organization.enforcement_generation.set(generation),
            Organization.invalidation.set(
                Invalidation(generation=generation, state="running", sessions_ended=0, started_at=now, handoffs=0)
            ),
        ]
    )


def _remaining() -> set[str]:
    return {s.session_id for s in org_sessions(ORG)}


@pytest.fixture
def org():
    Organization(ORG, created_at=clock.now()).save()
    return ORG


@pytest.fixture
def deleted(monkeypatch) -> Counter:
    """Every session key the stream function sends for deletion, counted."""
    sent: Counter = Counter()
    real = invalidation._delete_batch

    def counting(keys):
        sent.update(key["session_id"]["S"] for key in keys)
        real(keys)

    monkeypatch.setattr(invalidation, "_delete_batch", counting)
    return sent


def _pump(context_factory) -> StreamPump:
    return StreamPump(
        handler=lambda event, _context: end_sessions_on_enforcement(event, context_factory()),
        table_name=settings().tables.orgs,
        endpoint=settings().dynamodb_endpoint,
    )


def test_a_tiny_time_budget_hands_off_until_every_session_is_deleted_exactly_once(org, deleted, monkeypatch):
    # 300 members' sessions over 64 shards: 2 a shard per round takes several rounds.
    monkeypatch.setattr(invalidation, "PAGE_SIZE", 2)
    _populate(300)
    pump = _pump(OnePage)
    OnePage.invocations = 0
    _enforce_as_the_api(spare="s000007")

    pump.drain()

    assert _remaining() == {"s000007"}
    assert set(deleted) == {f"s{i:06d}" for i in range(300)} - {"s000007"}
    assert set(deleted.values()) == {1}, "a session was deleted more than once"
    progress = Organization.get(ORG, consistent_read=True).invalidation
    assert (progress.state, progress.sessions_ended) == ("done", 299)
    fullest = max(Counter(session_shard(f"u{i}") for i in range(300)).values())
    assert progress.handoffs >= fullest // 2 - 1  # one round per invocation
    assert OnePage.invocations >= progress.handoffs + 1

    # And then it stops: nothing left to deliver, nothing deleted again.
    invocations = OnePage.invocations
    assert pump.drain() == 0
    assert OnePage.invocations == invocations


def test_a_redelivered_enforcement_record_is_harmless(org, deleted):
    _populate(60)
    captured: list[dict] = []
    pump = StreamPump(
        handler=lambda event, context: (captured.append(event), end_sessions_on_enforcement(event, context))[1],
        table_name=settings().tables.orgs,
        endpoint=settings().dynamodb_endpoint,
    )
    _enforce_as_the_api()
    pump.drain()
    ended = Organization.get(ORG, consistent_read=True).invalidation.sessions_ended

    for event in captured:  # Lambda may deliver a batch again
        assert end_sessions_on_enforcement(event, Plenty()) == {"batchItemFailures": []}

    assert ended == 60
    assert Organization.get(ORG, consistent_read=True).invalidation.sessions_ended == 60
    assert set(deleted.values()) == {1}


def test_one_bad_record_does_not_hold_back_the_others(org, caplog):
    _populate(10)
    good = {
        "dynamodb": {
            "SequenceNumber": "200",
            "OldImage": {"org_id": {"S": ORG}, "mfa_enforced": {"BOOL": False}},
            "NewImage": {"org_id": {"S": ORG}, "mfa_enforced": {"BOOL": True}},
        }
    }
    bad = {"dynamodb": {"SequenceNumber": "100", "NewImage": {"mfa_enforced": {"BOOL": True}}}}  # no org_id
    Organization(ORG).update(actions=[Organization.mfa_enforced.set(True)])  # as an operator would

    with caplog.at_level(logging.ERROR, logger="keyward"):
        reply = end_sessions_on_enforcement({"Records": [bad, good]}, Plenty())

    assert reply == {"batchItemFailures": [{"itemIdentifier": "100"}]}
    assert _remaining() == set()
    assert any("100" in record.getMessage() for record in caplog.records)


def test_unprocessed_items_and_throttling_are_retried_with_growing_backoff(org, monkeypatch):
    _populate(30)
    connection = Session._get_connection()
    real = connection.batch_write_item
    calls = {"n": 0}

    def flaky(delete_items):
        calls["n"] += 1
        if calls["n"] == 1:
            raise PutError("throttled", _throttling_error())
        if calls["n"] == 2:  # DynamoDB processes some and hands the rest back
            real(delete_items=delete_items[:5])
            return {
                "UnprocessedItems": {Session.Meta.table_name: [{"DeleteRequest": {"Key": k}} for k in delete_items[5:]]}
            }
        return real(delete_items=delete_items)

    sleeps: list[float] = []
    monkeypatch.setattr(connection, "batch_write_item", flaky)
    monkeypatch.setattr(invalidation.time, "sleep", sleeps.append)
    monkeypatch.setattr(invalidation, "PARALLEL_BATCHES", 1)

    invalidation._delete_batch([{"org_id": {"S": ORG}, "session_id": {"S": f"s{i:06d}"}} for i in range(25)])

    assert {f"s{i:06d}" for i in range(25)}.isdisjoint(_remaining())
    assert len(sleeps) == 2
    assert all(delay >= 0 for delay in sleeps)


def test_a_persistent_failure_is_reported_and_the_clean_up_finishes_once_it_clears(org, monkeypatch, caplog):
    _populate(40)
    connection = Session._get_connection()
    real = connection.batch_write_item
    monkeypatch.setattr(invalidation.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(
        connection,
        "batch_write_item",
        lambda delete_items: (_ for _ in ()).throw(PutError("throttled", _throttling_error())),
    )
    record = {
        "dynamodb": {
            "SequenceNumber": "7",
            "OldImage": {"org_id": {"S": ORG}},
            "NewImage": {"org_id": {"S": ORG}, "mfa_enforced": {"BOOL": True}},
        }
    }
    _enforce_as_the_api()

    with caplog.at_level(logging.ERROR, logger="keyward"):
        assert end_sessions_on_enforcement({"Records": [record]}, Plenty()) == {
            "batchItemFailures": [{"itemIdentifier": "7"}]
        }
    assert len(_remaining()) == 40
    assert Organization.get(ORG, consistent_read=True).invalidation.state == "running"

    monkeypatch.setattr(connection, "batch_write_item", real)  # the fault clears; Lambda retries the record
    assert end_sessions_on_enforcement({"Records": [record]}, Plenty()) == {"batchItemFailures": []}
    assert _remaining() == set()
    assert Organization.get(ORG, consistent_read=True).invalidation.sessions_ended == 40


def test_a_newer_enforcement_supersedes_a_running_clean_up(org, deleted, monkeypatch):
    monkeypatch.setattr(invalidation, "PAGE_SIZE", 1)
    _populate(30)
    _enforce_as_the_api()
    invalidation.continue_invalidation(org_id=ORG, deadline=_Budget(pages=1))
    _populate(5, generation=1)  # logins after the first enforcement
    _enforce_as_the_api()

    invalidation.continue_invalidation(org_id=ORG, deadline=_Budget(pages=100))

    assert _remaining() == set()


class _Budget:
    def __init__(self, *, pages: int) -> None:
        self._left = pages

    def seconds_left(self) -> float:
        self._left -= 1
        return 900.0 if self._left >= 0 else 0.0


def _throttling_error() -> Exception:
    from botocore.exceptions import ClientError

    return ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "BatchWriteItem"
    )


def test_the_clean_up_reads_every_shard_and_resumes_each_from_its_own_position(org, deleted, monkeypatch):
    monkeypatch.setattr(invalidation, "PAGE_SIZE", 2)
    _populate(800)
    by_shard = Counter(session_shard(f"u{i}") for i in range(800))
    assert len(by_shard) == SESSION_SHARDS  # the organization's sessions are spread over every shard
    _enforce_as_the_api()

    invalidation.continue_invalidation(org_id=ORG, deadline=_Budget(pages=1))

    # One round: two sessions of every shard (or its only one), and a cursor naming where each stopped.
    progress = Organization.get(ORG, consistent_read=True).invalidation
    first_round = {shard: min(2, count) for shard, count in by_shard.items()}
    assert progress.sessions_ended == len(deleted) == sum(first_round.values())
    assert Counter(session_shard(f"u{int(key[1:])}") for key in deleted) == first_round
    positions = invalidation.parse_cursor(progress.cursor)
    assert set(positions) == set(range(SESSION_SHARDS))
    # Each position is the sort key of a session ended there (its member's digest, then its ID).
    ended_keys = {member_session_key(f"u{int(key[1:])}", key) for key in deleted}
    assert all(position is None or position in ended_keys for position in positions.values())

    # A later invocation carries on from those positions: every session deleted once.
    invalidation.continue_invalidation(org_id=ORG, deadline=_Budget(pages=1000))

    assert _remaining() == set()
    assert set(deleted) == {f"s{i:06d}" for i in range(800)}
    assert set(deleted.values()) == {1}
    done = Organization.get(ORG, consistent_read=True).invalidation
    assert (done.state, done.sessions_ended, done.cursor) == ("done", 800, None)
