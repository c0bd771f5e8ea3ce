"""The organizations table's stream function: each change record goes to the work it starts — an
enforcement's bulk ending of sessions (``invalidation``), a compliance recount (``recount``) — and an
enforcement switched on outside the API (an operator editing the table) is recorded as the API
would have."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from chalicelib.background import invalidation, recount
from chalicelib.base import audit, clock
from chalicelib.base.errors import MalformedEnforcementFlag
from chalicelib.base.models import Organization
from chalicelib.base.storage import ConditionsFailed, Item, transaction
from chalicelib.org import enforcement

if TYPE_CHECKING:
    from chalicelib.base.context import Deadline

log = logging.getLogger("keyward.enforcement")


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
    recount.process_change(old=old, new=new, deadline=deadline)
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
        invalidation.continue_invalidation(org_id=org_id, deadline=deadline)
    elif _handoffs(new) > _handoffs(old):
        invalidation.continue_invalidation(org_id=org_id, deadline=deadline, handoffs=_handoffs(new))


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
                Item.ORG,
                Organization(org_id),
                actions=[
                    Organization.enforced_at.set(enforced_at),
                    Organization.enforced_by.set(audit.OPERATOR.name),
                    Organization.enforcing_session_id.remove(),
                    Organization.enforcement_generation.set(generation + 1),
                    Organization.invalidation.set(
                        enforcement.new_invalidation(generation=generation + 1, started_at=enforced_at)
                    ),
                    # What keeps the reason of sessions it ends once they are deleted (chalicelib.access.lifecycle).
                    Organization.last_enforced_at.set(enforced_at),
                ],
                condition=(Organization.mfa_enforced == True) & (Organization.enforcement_generation == generation),
            )
            write.save(
                Item.AUDIT,
                audit.event(
                    org_id=org_id,
                    actor=audit.OPERATOR,
                    action="enforcement.enabled",
                    target=org_id,
                    details={"generation": generation + 1},
                ),
            )
    except ConditionsFailed:
        return  # recorded already, or switched off again meanwhile
    log.info("organization %s: enforcement set outside the API recorded (generation %d)", org_id, generation + 1)
