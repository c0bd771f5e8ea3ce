"""Enforcing MFA for an organization, and ending its older sessions in bulk afterwards.

An enforcement increments the organization's ``enforcement_generation``. From that moment every
session of an older generation is refused at request time (see ``sessions.ended_by_enforcement``);
the stream function on the organizations table then deletes those sessions, in as many Lambda
invocations as it takes: when one runs short of time it records where it stopped and bumps
``invalidation.handoffs``, and the stream record of that write starts the next invocation.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Protocol

from pynamodb.exceptions import PutError, UpdateError

from chalicelib import audit, clock, compliance, coverage, grace
from chalicelib.config import settings
from chalicelib.errors import ConcurrentChange, InvalidationFailed, MalformedEnforcementFlag, SecurityKeyRequired
from chalicelib.models import Invalidation, Member, Organization, Session
from chalicelib.sessions import Caller
from chalicelib.storage import THROTTLED, ConditionsFailed, LabelledWrite, condition_failed, response_code, transaction

log = logging.getLogger("keyward.enforcement")

OPERATOR = audit.OPERATOR
# Sessions examined per query page; progress is saved after each page.
PAGE_SIZE = 2000
BATCH_SIZE = 25  # BatchWriteItem's limit
PARALLEL_BATCHES = 8
MAX_BATCH_ATTEMPTS = 8


@dataclass(frozen=True)
class MfaStatus:
    """What ``GET /org/mfa`` shows."""

    org: Organization
    members_total: int
    # None while the figure is being recounted (see ``compliance_state``).
    members_compliant: int | None
    compliance_state: str = "done"


class AlongChange(Protocol):
    """Another organization setting changed by the same ``PUT /org/mfa`` (the enrolment policy):
    written in the enforcement's transaction, so that a refused enforcement changes neither."""

    def actions(self) -> list[Any]:
        """Update actions on the organization item."""

    def add_to(self, write: LabelledWrite) -> None:
        """Its other writes (its audit event)."""

    def applied(self, org: Organization) -> None:
        """Show the change on the organization as read."""

    def commit(self) -> None:
        """Make the change on its own, when enforcement stays as it is."""


# The path of the invalidation's fields, for update actions and conditions: PynamoDB's types read
# ``Organization.invalidation.cursor`` as the cursor's value, not as its path.
_INVALIDATION: Any = Organization.invalidation

if TYPE_CHECKING:
    class Deadline(Protocol):
        """How much longer this invocation may run (a Lambda context provides it)."""

        def seconds_left(self) -> float: ...


def status(*, org: Organization) -> MfaStatus:
    """The organization's enforcement and how many members hold a key that its authenticator
    policy accepts, from the organization's counters (chalicelib/coverage.py,
    chalicelib/compliance.py), whatever its size. ``org`` is the item the request read with its
    session (a transactional read, strongly consistent): no read of its own."""
    counters = coverage.counters_of(org)
    compliant = compliance.of(org)
    return MfaStatus(org=org, members_total=counters.members_total, members_compliant=compliant.members_compliant,
                     compliance_state=compliant.state)


def set_enforced(
    *, caller: Caller, enforced: bool, grace_period_hours: int | None = None, along: AlongChange | None = None,
) -> MfaStatus:
    """``PUT /org/mfa``: enforce MFA (ending every other session at once) or relax it.

    Enforcing requires the admin to hold a key themselves — checked inside the transaction,
    so a key deleted at the same moment cannot slip through. Repeating the current setting
    changes nothing. ``grace_period_hours`` (see chalicelib/grace.py) comes with a new enforcement
    (0 when left out) or changes the one in force, for everyone at once. ``along`` (another
    setting of the same request) is made in the same transaction, or alone when enforcement stays.

    Raises:
        SecurityKeyRequired: the admin has no security key of their own.
        ConcurrentChange: another admin changed the setting at the same moment.
    """
    # caller.org came with the session, strongly consistent: the write's conditions catch a change since.
    before = status(org=caller.org)
    if bool(before.org.mfa_enforced) == enforced:
        if enforced and grace_period_hours is not None and grace_period_hours != (before.org.grace_period_hours or 0):
            grace.change_period(org_id=before.org.org_id, hours=grace_period_hours, actor=caller.actor,
                                client=caller.client, along=along)
            before.org.grace_period_hours = grace_period_hours
        elif along is not None:
            along.commit()
        if along is not None:
            along.applied(before.org)
        return before
    # The answer is built from what was read before the change and what the change wrote: a read
    # failing after the commit would otherwise report 503 "nothing was changed" for a change made.
    changed = (_enforce(caller=caller, org=before.org, grace_period_hours=grace_period_hours or 0, along=along)
               if enforced else _relax(caller=caller, org=before.org, along=along))
    return replace(before, org=changed)


def change_alone(*, org: Organization, change: AlongChange | None) -> MfaStatus:
    """``PUT /org/mfa`` without ``enforced``: another setting changes, enforcement stays. ``org`` is
    the item read with the session."""
    before = status(org=org)
    if change is not None:
        change.commit()
        change.applied(before.org)
    return before


def _enforce(*, caller: Caller, org: Organization, grace_period_hours: int, along: AlongChange | None) -> Organization:
    session = caller.session
    enforced_at = clock.now()
    generation = int(org.enforcement_generation) + 1
    try:
        with transaction() as write:
            write.condition_check(
                "own key", Member, session.org_id, session.user_id, condition=Member.key_count > 0,
            )
            write.update(
                "org",
                Organization(org.org_id),
                actions=[
                    Organization.mfa_enforced.set(True),
                    Organization.enforced_at.set(enforced_at),
                    Organization.enforced_by.set(session.user_id),
                    Organization.enforcing_session_id.set(session.session_id),
                    Organization.enforcement_generation.set(generation),
                    Organization.invalidation.set(_new_invalidation(generation=generation, started_at=enforced_at)),
                    *(along.actions() if along else []),
                    Organization.grace_period_hours.set(grace_period_hours),
                    Organization.last_enforced_at.set(enforced_at),
                ],
                condition=(Organization.mfa_enforced == False)  # noqa: E712
                & (Organization.enforcement_generation == org.enforcement_generation),
            )
            write.save("audit", audit.event(
                org_id=org.org_id, actor=caller.actor, action="enforcement.enabled", target=org.org_id,
                client=caller.client, details={"generation": generation, "session_id": session.session_id,
                                               "grace_period_hours": grace_period_hours},
            ))
            if along:
                along.add_to(write)
    except ConditionsFailed as refused:
        if "own key" in refused.labels:
            raise SecurityKeyRequired("Register a security key of your own before enforcing MFA.") from None
        raise ConcurrentChange("The organization's MFA setting changed meanwhile; reload and try again.") from None
    org.mfa_enforced, org.enforced_at, org.enforced_by = True, enforced_at, session.user_id
    org.enforcing_session_id, org.enforcement_generation = session.session_id, generation
    org.invalidation = _new_invalidation(generation=generation, started_at=enforced_at)
    org.grace_period_hours, org.last_enforced_at = grace_period_hours, enforced_at
    if along:
        along.applied(org)
    return org


def _relax(*, caller: Caller, org: Organization, along: AlongChange | None) -> Organization:
    # The generation and the enforcing session stay: sessions ended by the enforcement stay ended.
    try:
        with transaction() as write:
            write.update(
                "org",
                Organization(org.org_id),
                actions=[
                    Organization.mfa_enforced.set(False),
                    Organization.enforced_at.remove(),
                    Organization.enforced_by.remove(),
                    *(along.actions() if along else []),
                ],
                # A flag of the wrong type reads as enforced; relaxing is how an admin repairs it.
                condition=(Organization.mfa_enforced == True) | ~Organization.mfa_enforced.is_type(),  # noqa: E712
            )
            write.save("audit", audit.event(org_id=org.org_id, actor=caller.actor, action="enforcement.disabled",
                                            target=org.org_id, client=caller.client))
            if along:
                along.add_to(write)
    except ConditionsFailed:
        raise ConcurrentChange("The organization's MFA setting changed meanwhile; reload and try again.") from None
    org.mfa_enforced, org.enforced_at, org.enforced_by = False, None, None
    if along:
        along.applied(org)
    return org


def _new_invalidation(*, generation: int, started_at: Any) -> Invalidation:
    return Invalidation(generation=generation, state="running", sessions_ended=0, started_at=started_at, handoffs=0)


# --- the stream function ----------------------------------------------------------------------

def process_org_changes(*, records: Iterable[Mapping[str, Any]], deadline: Deadline) -> list[str]:
    """Handle a batch of the organizations table's stream records.

    Each record is handled on its own: one that fails is logged and its sequence number
    returned (for Lambda's ReportBatchItemFailures, which retries it), without holding back
    the others. Handling a record twice is harmless.
    """
    failed: list[str] = []
    for record in records:
        change = record.get("dynamodb") or {}
        try:
            _process(old=change.get("OldImage"), new=change.get("NewImage"), deadline=deadline)
        except Exception:  # any failure of one record must not lose the others; it is retried
            log.exception("organization stream record %s failed; it will be retried", change.get("SequenceNumber"))
            failed.append(str(change.get("SequenceNumber", "")))
    return failed


def _process(*, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, deadline: Deadline) -> None:
    """One record: a switch of the flag from off to on is an enforcement, whoever made it.

    Raises:
        MalformedEnforcementFlag: the flag was given a value that is not a BOOL. The record
            fails (and, after Lambda's retries, goes to the dead-letter queue); requests read
            such a flag as enforced meanwhile (see ``models.EnforcementFlag``).
    """
    if not new:
        return
    compliance.process_change(old=old, new=new, deadline=deadline)
    org_id = new["org_id"]["S"]
    if _flag_changed(old, new) and not isinstance(_flag(new), bool):
        raise MalformedEnforcementFlag(
            f"organization {org_id}: mfa_enforced was set to {new['mfa_enforced']!r}, not a BOOL; "
            "requests read it as enforced until it is set to true or false"
        )
    if _flag(new) is True and _flag(old) is not True:
        if _generation(new) == _generation(old):
            # The flag changed without the new generation the API writes with it: an operator's edit.
            _record_operator_enforcement(org_id=org_id, generation=_generation(new))
        continue_invalidation(org_id=org_id, deadline=deadline)
    elif _handoffs(new) > _handoffs(old):
        continue_invalidation(org_id=org_id, deadline=deadline, handoffs=_handoffs(new))


def _flag(image: Mapping[str, Any] | None) -> Any:
    """The image's ``mfa_enforced``: True or False, None when absent, else the malformed value.

    A malformed earlier value counts as off: switching from it to on is an enforcement.
    """
    value = (image or {}).get("mfa_enforced")
    if value is None or value.get("NULL") is True:
        return None
    return value["BOOL"] if set(value) == {"BOOL"} and isinstance(value["BOOL"], bool) else value


def _flag_changed(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    return (old or {}).get("mfa_enforced") != new.get("mfa_enforced")


def _generation(image: Mapping[str, Any] | None) -> int:
    return int((image or {}).get("enforcement_generation", {}).get("N", 0))


def _handoffs(image: Mapping[str, Any] | None) -> int:
    invalidation = (image or {}).get("invalidation", {}).get("M", {})
    return int(invalidation.get("handoffs", {}).get("N", 0))


def _record_operator_enforcement(*, org_id: str, generation: int) -> None:
    """Give an enforcement set outside the API (an operator in the console) what the API records:
    a new generation, which ends every session that started before it.

    It has no enforcing session to spare, so every session of the organization ends. The
    generation the flag was switched in is the condition: a redelivered record, or a later
    switch already recorded, finds a newer one and changes nothing.
    """
    enforced_at = clock.now()
    try:
        with transaction() as write:
            write.update(
                "org",
                Organization(org_id),
                actions=[
                    Organization.enforced_at.set(enforced_at),
                    Organization.enforced_by.set(OPERATOR.name),
                    Organization.enforcing_session_id.remove(),
                    Organization.enforcement_generation.set(generation + 1),
                    Organization.invalidation.set(_new_invalidation(generation=generation + 1, started_at=enforced_at)),
                    # What keeps the reason of sessions it ends once they are deleted (chalicelib.lifecycle).
                    Organization.last_enforced_at.set(enforced_at),
                ],
                condition=(Organization.mfa_enforced == True)  # noqa: E712
                & (Organization.enforcement_generation == generation),
            )
            write.save("audit", audit.event(org_id=org_id, actor=OPERATOR, action="enforcement.enabled",
                                            target=org_id, details={"generation": generation + 1}))
    except ConditionsFailed:
        return  # recorded already, or switched off again meanwhile
    log.info("organization %s: enforcement set outside the API recorded (generation %d)", org_id, generation + 1)


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
    spared = org.enforcing_session_id
    reserve = settings().invalidation_reserve_seconds
    while True:
        if deadline.seconds_left() < reserve:
            _save_progress(org=org, invalidation=invalidation, handoff=True)
            log.info("organization %s: %d sessions ended so far; continuing in the next invocation",
                     org_id, invalidation.sessions_ended)
            return
        keys, cursor = _ended_sessions_page(org_id=org_id, generation=int(invalidation.generation), after=invalidation.cursor)
        keys = [key for key in keys if key["session_id"]["S"] != spared]
        try:
            invalidation.sessions_ended += _delete_sessions(keys)
        except InvalidationFailed as failure:
            # Count what this page did delete: the retry re-reads the page and finds only the rest.
            invalidation.sessions_ended += failure.deleted
            _save_progress(org=org, invalidation=invalidation, handoff=False)
            raise
        invalidation.cursor = cursor
        if cursor is None:
            _finish(org=org, invalidation=invalidation)
            return
        if not _save_progress(org=org, invalidation=invalidation, handoff=False):
            return


def _ended_sessions_page(*, org_id: str, generation: int, after: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """One query page of sessions older than ``generation``: their keys, and the cursor after it."""
    start = {"org_id": {"S": org_id}, "session_id": {"S": after}} if after else None
    results = Session.query(
        org_id,
        filter_condition=Session.enforcement_generation < generation,
        attributes_to_get=["org_id", "session_id"],
        page_size=PAGE_SIZE,
        last_evaluated_key=start,
        consistent_read=True,
    )
    page = next(results.page_iter)
    last = page.get("LastEvaluatedKey")
    return list(page.get("Items", [])), (last["session_id"]["S"] if last else None)


def _delete_sessions(keys: list[dict[str, Any]]) -> int:
    """Delete sessions 25 at a time, several batches at once; returns how many were deleted.

    Raises:
        InvalidationFailed: a batch could not be deleted; it says how many the others deleted.
    """
    from concurrent.futures import ThreadPoolExecutor  # only the stream function needs threads

    batches = [keys[i:i + BATCH_SIZE] for i in range(0, len(keys), BATCH_SIZE)]
    if not batches:
        return 0
    with ThreadPoolExecutor(max_workers=min(PARALLEL_BATCHES, len(batches))) as pool:
        futures = [pool.submit(_delete_batch, batch) for batch in batches]
    # A failed batch may still have deleted some of its sessions before giving up.
    deleted = sum(len(batch) if future.exception() is None else getattr(future.exception(), "deleted", 0)
                  for batch, future in zip(batches, futures))
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
            time.sleep(random.uniform(0, min(5.0, 0.05 * 2 ** attempt)))
        try:
            response = connection.batch_write_item(delete_items=pending)
        except PutError as error:
            code = response_code(error)
            if code is not None and code not in THROTTLED:
                raise
            log.warning("session deletion throttled or unanswered (%s); retrying", code)
            continue
        unprocessed = response.get("UnprocessedItems", {}).get(Session.Meta.table_name, [])
        pending = [request["DeleteRequest"]["Key"] for request in unprocessed]
        if not pending:
            return
    raise InvalidationFailed(f"{len(pending)} sessions could not be deleted after {MAX_BATCH_ATTEMPTS} attempts",
                             deleted=len(keys) - len(pending))


def _progress_condition(invalidation: Invalidation, *, handoffs: int) -> Any:
    return (_INVALIDATION.generation == invalidation.generation) & (
        _INVALIDATION.handoffs == handoffs
    )


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
    return OPERATOR


def _finish(*, org: Organization, invalidation: Invalidation) -> None:
    try:
        with transaction() as write:
            write.update(
                "org",
                Organization(org.org_id),
                actions=[
                    _INVALIDATION.state.set("done"),
                    _INVALIDATION.sessions_ended.set(invalidation.sessions_ended),
                    _INVALIDATION.finished_at.set(clock.now()),
                    _INVALIDATION.cursor.remove(),
                ],
                condition=_progress_condition(invalidation, handoffs=int(invalidation.handoffs)),
            )
            write.save("audit", audit.event(
                org_id=org.org_id, actor=_enforcer(org), action="enforcement.sessions_ended",
                target=org.org_id, details={"sessions_ended": invalidation.sessions_ended,
                                            "generation": invalidation.generation},
            ))
    except ConditionsFailed:
        return
    log.info("organization %s: enforcement ended %d sessions", org.org_id, invalidation.sessions_ended)
