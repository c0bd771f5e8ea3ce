"""Ending an enforcement's sessions in bulk: the sessions older than its generation are deleted page
by page, several batches at once, resumable across invocations (progress saved on the organization
item, handed over to the next invocation before this one's time runs out: the rule of
chalicelib/background/resumable.py).

An organization's sessions are spread over the shards of the by-org-shard index
(chalicelib/base/models.py, SESSION_SHARDS). Each round reads one page of every shard not yet
done, in parallel, and deletes what the pages found together, 25 keys a batch: a round leaves at
most one partly filled batch, as a single page did. The cursor names every shard's position.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pynamodb.exceptions import PutError, UpdateError

from chalicelib.background import resumable
from chalicelib.base import audit, clock, metrics
from chalicelib.base.errors import InvalidationFailed
from chalicelib.base.models import SESSION_SHARDS, Invalidation, Organization, Session, org_shard_key
from chalicelib.base.storage import (
    CAPACITY_EXCEEDED,
    THROTTLED,
    ConditionsFailed,
    Item,
    condition_failed,
    response_code,
    transaction,
)

if TYPE_CHECKING:
    from chalicelib.base.context import Deadline

log = logging.getLogger("keyward.enforcement")

# The path of the invalidation's fields, for update actions and conditions: PynamoDB's types read
# ``Organization.invalidation.cursor`` as the cursor's value, not as its path.
_INVALIDATION: Any = Organization.invalidation

# Sessions a query page of one shard reads: a round of every shard reads up to 128,000.
PAGE_SIZE = 1000
BATCH_SIZE = 25  # BatchWriteItem's limit
PARALLEL_BATCHES = 8
# Shards queried at once in a round.
PARALLEL_QUERIES = 8
MAX_BATCH_ATTEMPTS = 8


def continue_invalidation(*, org_id: str, deadline: Deadline, handoffs: int | None = None) -> None:
    """Delete the sessions the latest enforcement ended, from where the last invocation stopped.

    ``handoffs`` is the continuation a stream record asks for; a record of an older one is stale.
    """
    org = Organization.get(org_id, consistent_read=True)
    invalidation = org.invalidation
    if invalidation is None or invalidation.state != "running":
        return
    if handoffs is not None and invalidation.handoffs != handoffs:
        return
    if invalidation.generation != org.enforcement_generation:
        return  # a newer enforcement has its own invalidation, which covers this one
    ended_before = int(invalidation.sessions_ended)
    try:
        resumable.run(
            _SessionDeletion(org=org, invalidation=invalidation), cursor=invalidation.cursor, deadline=deadline
        )
    finally:
        # This invocation's progress, failed or not: a clean-up that stalls shows as zeros.
        ended = int(invalidation.sessions_ended) - ended_before
        metrics.count("EnforcementSessionsEnded", value=ended, org=org_id)


@dataclass(frozen=True)
class _SessionDeletion:
    """The session clean-up's pages, progress and end, for :func:`resumable.run`; the figures go
    on ``invalidation`` as the pages are done."""

    org: Organization
    invalidation: Invalidation

    def work_page(self, *, after: str | None) -> resumable.Page:
        invalidation = self.invalidation
        keys, cursor = _ended_sessions_round(
            org_id=self.org.org_id, generation=int(invalidation.generation), after=after
        )
        keys = [key for key in keys if key["session_id"]["S"] != self.org.enforcing_session_id]
        try:
            invalidation.sessions_ended += _delete_sessions(keys)
        except InvalidationFailed as failure:
            # Count what this page did delete: the retry re-reads the page and finds only the rest.
            invalidation.sessions_ended += failure.deleted
            _save_progress(org=self.org, invalidation=invalidation, handoff=False)
            raise
        return resumable.Page(next_cursor=cursor)

    def save_progress(self, *, cursor: str | None, handoff: bool) -> bool:
        self.invalidation.cursor = cursor
        saved = _save_progress(org=self.org, invalidation=self.invalidation, handoff=handoff)
        if handoff and saved:
            metrics.count("EnforcementHandoffs", org=self.org.org_id)
        if handoff:
            log.info(
                "organization %s: %d sessions ended so far; continuing in the next invocation",
                self.org.org_id,
                self.invalidation.sessions_ended,
            )
        return saved

    def finish(self) -> None:
        _finish(org=self.org, invalidation=self.invalidation)


# Where each shard's query stands, as the cursor stores it: a shard absent has not started, one
# naming None is done, any other names the index sort key of the last session read.
ShardPositions = dict[int, str | None]


def parse_cursor(cursor: str | None) -> ShardPositions:
    """The shard positions an invalidation's cursor names (None: every shard from its start)."""
    if cursor is None:
        return {}
    return {int(shard): position for shard, position in json.loads(cursor).items()}


def format_cursor(positions: ShardPositions) -> str | None:
    """The cursor for these shard positions; None once every shard is done."""
    if len(positions) == SESSION_SHARDS and all(position is None for position in positions.values()):
        return None
    return json.dumps({str(shard): position for shard, position in sorted(positions.items())}, separators=(",", ":"))


def _ended_sessions_round(
    *, org_id: str, generation: int, after: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One query page of every shard not yet done, in parallel: the keys of the sessions older
    than ``generation`` they found, and the cursor after them."""
    from concurrent.futures import ThreadPoolExecutor  # only the stream function needs threads

    positions = parse_cursor(after)
    pending = [shard for shard in range(SESSION_SHARDS) if shard not in positions or positions[shard] is not None]
    with ThreadPoolExecutor(max_workers=max(1, min(PARALLEL_QUERIES, len(pending)))) as pool:
        pages = list(
            pool.map(
                lambda shard: _ended_sessions_page(
                    org_id=org_id, shard=shard, generation=generation, after=positions.get(shard)
                ),
                pending,
            )
        )
    keys: list[dict[str, Any]] = []
    for shard, (found, position) in zip(pending, pages, strict=True):
        keys += found
        positions[shard] = position
    return keys, format_cursor(positions)


def _ended_sessions_page(
    *, org_id: str, shard: int, generation: int, after: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One query page of one shard: the keys of sessions older than ``generation``, and the
    position after it (None: the shard is done)."""
    shard_key = org_shard_key(org_id, shard)
    start = (
        {
            "org_shard": {"S": shard_key},
            "member_session": {"S": after},
            # The sort key ends with the session ID, the table's key.
            "session_id": {"S": after.rsplit("#", 1)[1]},
        }
        if after
        else None
    )
    results = Session.by_org_shard.query(
        shard_key,
        filter_condition=Session.enforcement_generation < generation,
        attributes_to_get=["session_id"],
        page_size=PAGE_SIZE,
        last_evaluated_key=start,
    )
    page = next(results.page_iter)
    last = page.get("LastEvaluatedKey")
    keys = [{"session_id": item["session_id"]} for item in page.get("Items", [])]
    return keys, (last["member_session"]["S"] if last else None)


def _delete_sessions(keys: list[dict[str, Any]]) -> int:
    """Delete sessions 25 at a time, several batches at once; returns how many were deleted.

    Raises:
        InvalidationFailed: a batch could not be deleted; it says how many the others deleted.
    """
    from concurrent.futures import (
        ThreadPoolExecutor,  # only the stream function needs threads
    )

    batches = [keys[i : i + BATCH_SIZE] for i in range(0, len(keys), BATCH_SIZE)]
    if not batches:
        return 0
    with ThreadPoolExecutor(max_workers=min(PARALLEL_BATCHES, len(batches))) as pool:
        futures = [pool.submit(_delete_batch, batch) for batch in batches]
    # A failed batch may still have deleted some of its sessions before giving up.
    deleted = sum(
        len(batch) if future.exception() is None else getattr(future.exception(), "deleted", 0)
        for batch, future in zip(batches, futures, strict=True)
    )
    failure = next((future.exception() for future in futures if future.exception() is not None), None)
    if failure is not None:
        raise InvalidationFailed(f"{deleted} of {len(keys)} sessions deleted: {failure}", deleted=deleted) from failure
    return deleted


def _delete_batch(keys: list[dict[str, Any]]) -> None:
    """One BatchWriteItem, retrying unprocessed keys and throttling with jittered exponential backoff.

    Raises:
        InvalidationFailed: DynamoDB still refused after every attempt (the record is retried).
    """
    connection = Session._get_connection()
    pending = keys
    for attempt in range(MAX_BATCH_ATTEMPTS):
        if attempt:
            time.sleep(random.uniform(0, min(5.0, 0.05 * 2**attempt)))
        try:
            response = connection.batch_write_item(delete_items=pending)
        except PutError as error:
            code = response_code(error)
            if code is not None and code not in THROTTLED:
                raise
            if code in CAPACITY_EXCEEDED:
                metrics.count("DynamoDBThrottles", error_code=code)
            log.warning("session deletion throttled or unanswered (%s); retrying", code)
            continue
        unprocessed = response.get("UnprocessedItems", {}).get(Session.Meta.table_name, [])
        pending = [request["DeleteRequest"]["Key"] for request in unprocessed]
        if not pending:
            return
    raise InvalidationFailed(
        f"{len(pending)} sessions could not be deleted after {MAX_BATCH_ATTEMPTS} attempts",
        deleted=len(keys) - len(pending),
    )


def _progress_condition(invalidation: Invalidation, *, handoffs: int) -> Any:
    return (_INVALIDATION.generation == invalidation.generation) & (_INVALIDATION.handoffs == handoffs)


def _save_progress(*, org: Organization, invalidation: Invalidation, handoff: bool) -> bool:
    """Record how far the deletion got; False if another enforcement or invocation took over."""
    handoffs = int(invalidation.handoffs)
    actions = [
        _INVALIDATION.sessions_ended.set(invalidation.sessions_ended),
        _INVALIDATION.cursor.set(invalidation.cursor) if invalidation.cursor else _INVALIDATION.cursor.remove(),
    ]
    if handoff:
        actions.append(_INVALIDATION.handoffs.set(handoffs + 1))
    try:
        Organization(org.org_id).update(actions=actions, condition=_progress_condition(invalidation, handoffs=handoffs))
    except UpdateError as error:
        if condition_failed(error):
            log.info("organization %s: invalidation taken over elsewhere; stopping", org.org_id)
            return False
        raise
    return True


def _enforcer(org: Organization) -> audit.Actor:
    """Who enforced: an enforcement through the API names its session; an operator's has none."""
    if org.enforcing_session_id and org.enforced_by:
        return audit.actor_of(org.enforced_by)
    return audit.OPERATOR


def _finish(*, org: Organization, invalidation: Invalidation) -> None:
    try:
        with transaction() as write:
            write.update(
                Item.ORG,
                Organization(org.org_id),
                actions=[
                    _INVALIDATION.state.set("done"),
                    _INVALIDATION.sessions_ended.set(invalidation.sessions_ended),
                    _INVALIDATION.finished_at.set(clock.now()),
                    _INVALIDATION.cursor.remove(),
                ],
                condition=_progress_condition(invalidation, handoffs=int(invalidation.handoffs)),
            )
            write.save(
                Item.AUDIT,
                audit.event(
                    org_id=org.org_id,
                    actor=_enforcer(org),
                    action="enforcement.sessions_ended",
                    target=org.org_id,
                    details={"sessions_ended": invalidation.sessions_ended, "generation": invalidation.generation},
                ),
            )
    except ConditionsFailed:
        return
    log.info("organization %s: enforcement ended %d sessions", org.org_id, invalidation.sessions_ended)
