"""The outbox: audit events, saved in the transaction of the action they record, delivered from the
audit table's stream to every channel that wants them — the organization's EventBridge bus, mail
to the member or the admins (SES), the organization's webhooks.

Delivery never touches the user's request: it happens afterwards, in the stream function. Each
(event, channel) pair has one delivery record, claimed by a conditional write before anything is
sent: a channel that already took the event is never sent it again, however often the stream
redelivers the record. A mail is sent at most once — a claim left behind by an invocation that died
mid-send is not retried, because the mail may have gone — while EventBridge and webhooks, whose
consumers deduplicate by event ID, get the event again. A failing channel is retried with backoff;
when it still fails its record is reported in ``batchItemFailures`` (the channels that succeeded
are not repeated), and after the event source's retries the record goes to the dead-letter queue.
One event failing never stops the others of the batch from being delivered.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pynamodb.exceptions import UpdateError
from pynamodb.expressions.update import Action

from chalicelib.base import audit, aws, clock, metrics
from chalicelib.base.config import settings
from chalicelib.base.models import AuditEvent, Delivery, Member
from chalicelib.base.storage import condition_failed
from chalicelib.delivery import notifications, webhook_secrets, webhooks

if TYPE_CHECKING:
    from chalicelib.base.context import Deadline

log = logging.getLogger("keyward.outbox")

SOURCE = "keyward"
# Attempts per channel within one invocation, and the first pause between them (doubling, jittered).
ATTEMPTS = 3
BACKOFF_SECONDS = 0.5
# No further attempt is started with less time than this left in the invocation.
RESERVE_SECONDS = 20.0
DELIVERY_RETENTION = timedelta(days=30)

SENDING, DELIVERED, FAILED, SKIPPED, REJECTED = "sending", "delivered", "failed", "skipped", "rejected"


class Skipped(Exception):
    """Nothing to send on this channel, for a reason worth recording (a member without an email)."""


class Rejected(Exception):
    """The channel refused this event for good; sending it again cannot help."""


class Failed(Exception):
    """This attempt failed; a later one may succeed."""

    def __init__(self, reason: str, *, status_code: int | None = None, duration_ms: int | None = None) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.duration_ms = duration_ms


@dataclass(frozen=True)
class Answered:
    """An endpoint's answer to an attempt that went through, and how long it took."""

    status_code: int
    duration_ms: int


def event_id(entry: AuditEvent) -> str:
    """The event's ID for its consumers, the same on every delivery (the ``webhook-id``,
    EventBridge's detail ``id``)."""
    return "evt_" + hashlib.sha256(f"{entry.org_id}\n{entry.event_key}".encode()).hexdigest()[:32]


def describe(entry: AuditEvent) -> dict[str, Any]:
    """The event as EventBridge and webhooks receive it: the audit log's fields, its ID and organization."""
    return {"id": event_id(entry), "org_id": entry.org_id, **audit.describe(entry)}


def deliver_audit_events(*, records: Iterable[Mapping[str, Any]], deadline: Deadline) -> list[str]:
    """Handle a batch of the audit table's stream records; returns the sequence numbers that failed."""
    batch = list(records)
    _measure_backlog(batch)
    failed: list[str] = []
    for record in batch:
        sequence = record["dynamodb"]["SequenceNumber"]
        try:
            if record.get("eventName") != "INSERT":
                continue  # events are written once; their expiry (REMOVE) is not news
            entry = audit.from_stream(record["dynamodb"]["NewImage"])
            if entry.migrated:
                continue  # a copy `migrate audit` made: the original was delivered from the old table
            if not deliver(entry=entry, deadline=deadline):
                failed.append(sequence)
        except Exception:  # one event's failure must not stop the others of the batch
            log.exception("audit stream record %s failed; it will be retried", sequence)
            failed.append(sequence)
    return failed


def _measure_backlog(records: list[Mapping[str, Any]]) -> None:
    """How long the batch's oldest record waited in the stream, from its ApproximateCreationDateTime
    (seconds since the epoch, to the second): how far delivery lags behind the events."""
    created = [
        float(record["dynamodb"]["ApproximateCreationDateTime"])
        for record in records
        if record.get("dynamodb", {}).get("ApproximateCreationDateTime") is not None
    ]
    if created:
        metrics.measure(
            "DeliveryBacklogAge", max(time.time() - min(created), 0.0), unit=metrics.Unit.SECONDS, records=len(records)
        )


def deliver(*, entry: AuditEvent, deadline: Deadline) -> bool:
    """Deliver one event to every channel that wants it; True when none of them is left failing."""
    delivered = True
    if settings().event_bus:
        delivered &= _deliver(
            channel=f"events#{entry.org_id}",
            entry=entry,
            deadline=deadline,
            attempt=lambda: _put_event(entry),
            resend_unsure=True,
        )
    if settings().mail_from:
        for user_id in notifications.recipients(entry):
            delivered &= _deliver(
                channel=f"mail#{entry.org_id}#{user_id}",
                entry=entry,
                deadline=deadline,
                attempt=functools.partial(_mail, entry, user_id),
                resend_unsure=False,
            )
    for destination in webhooks.destinations(entry=entry):
        delivered &= _deliver_webhook(destination=destination, entry=entry, deadline=deadline)
    return delivered


def _deliver_webhook(*, destination: webhooks.Destination, entry: AuditEvent, deadline: Deadline) -> bool:
    reasons: list[str] = []
    unsealed: list[str] = []
    webhook = destination.current
    # What goes out: the event itself, or, when an admin asked to send an earlier one again, that
    # one, under its own ID (``webhook-id``) and signed anew. Either is recorded under this event's key.
    sent: AuditEvent | None = entry
    if entry.action == webhooks.REDELIVERED:
        sent = webhooks.event_sent_again(entry=entry)

    def attempt() -> Answered:
        if sent is None:
            raise Skipped("the event to send again is no longer kept")
        body = json.dumps(
            {"type": sent.action, "timestamp": clock.iso(sent.at), "data": describe(sent)}, separators=(",", ":")
        ).encode()
        if not unsealed:  # decrypted here and only here, once per delivery
            unsealed.append(
                webhook_secrets.unseal(
                    org_id=destination.org_id,
                    webhook_id=destination.webhook_id,
                    sealed=destination.sealed_secret,
                    legacy=destination.legacy_secret,
                )
            )
        started = time.monotonic()
        try:
            status = webhooks.post(
                url=destination.url,
                secret=unsealed[0],
                message_id=event_id(sent),
                timestamp=int(time.time()),
                body=body,
            )
        except webhooks.DeliveryFailed as failure:
            reasons.append(str(failure))
            answered_in = _milliseconds_since(started) if failure.status_code is not None else None
            raise Failed(str(failure), status_code=failure.status_code, duration_ms=answered_in) from None
        return Answered(status_code=status, duration_ms=_milliseconds_since(started))

    channel = destination.channel
    if _deliver(channel=channel, entry=entry, sent=sent, deadline=deadline, attempt=attempt, resend_unsure=True):
        if webhook is not None and (reasons or webhook.consecutive_failures):
            webhooks.record_success(webhook=webhook)
        return True
    if webhook is None:
        return False  # a URL the endpoint no longer has: its failures are not the endpoint's
    if webhooks.record_failure(webhook=webhook, reason=reasons[-1] if reasons else "failed"):
        log.warning("webhook %s of %s disabled after repeated failures", webhook.webhook_id, webhook.org_id)
        # Disabled endpoints are not sent anything: this event is done with it.
        _finish(channel=channel, entry=entry, state=SKIPPED, detail="the endpoint was disabled after repeated failures")
        return True
    return False


def _milliseconds_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _deliver(
    *,
    channel: str,
    entry: AuditEvent,
    deadline: Deadline,
    attempt: Callable[[], Any],
    resend_unsure: bool,
    sent: AuditEvent | None = None,
) -> bool:
    """Deliver to one channel, unless it already took the event; True when it is done with it.
    ``sent`` is the event that goes out, when it is not ``entry`` itself (a redelivery)."""
    for number in range(1, ATTEMPTS + 1):
        if not _claim(channel=channel, entry=entry, sent=sent, resend_unsure=resend_unsure):
            return True
        try:
            result = attempt()
        except Skipped as skipped:
            _finish(channel=channel, entry=entry, state=SKIPPED, detail=str(skipped))
            return True
        except (Rejected, notifications.MailRejected) as rejected:
            log.warning("%s refused event %s for good: %s", channel, entry.event_key, rejected)
            _finish(channel=channel, entry=entry, state=REJECTED, detail=str(rejected))
            return True
        except Exception as error:  # throttling, timeouts, 5xx: worth another attempt
            failure = error if isinstance(error, Failed) else Failed(f"{type(error).__name__}: {error}")
            log.warning("%s: attempt %d of event %s failed: %s", channel, number, entry.event_key, failure)
            metrics.count(
                "DeliveryFailures", by=("Channel", channel.split("#", 1)[0]), org=entry.org_id, attempt=number
            )
            _finish(
                channel=channel,
                entry=entry,
                state=FAILED,
                detail=str(failure)[:500],
                status_code=failure.status_code,
                duration_ms=failure.duration_ms,
            )
            pause = BACKOFF_SECONDS * 2 ** (number - 1) * random.uniform(0.5, 1.0)
            if number == ATTEMPTS or deadline.seconds_left() < RESERVE_SECONDS + pause:
                return False
            time.sleep(pause)
            continue
        answered = result if isinstance(result, Answered) else None
        _finish(
            channel=channel,
            entry=entry,
            state=DELIVERED,
            status_code=answered.status_code if answered else None,
            duration_ms=answered.duration_ms if answered else None,
        )
        return True
    return False


def _claim(*, channel: str, entry: AuditEvent, sent: AuditEvent | None, resend_unsure: bool) -> bool:
    """Take the (event, channel) pair for one attempt; False when it was delivered (or settled) before."""
    retryable = Delivery.state == FAILED
    if resend_unsure:
        retryable |= Delivery.state == SENDING
    now = clock.now()
    what = sent or entry
    try:
        Delivery(channel, entry.event_key).update(
            actions=[
                Delivery.org_id.set(entry.org_id),
                Delivery.shard_key.set(what.shard_key),
                Delivery.event_id.set(event_id(what)),
                Delivery.action.set(what.action),
                Delivery.state.set(SENDING),
                Delivery.attempts.add(1),
                Delivery.last_attempt_at.set(now),
                Delivery.ttl.set(now + DELIVERY_RETENTION),
                *([Delivery.redelivers.set(what.event_key)] if what is not entry else []),
            ],
            condition=Delivery.channel.does_not_exist() | retryable,
        )
    except UpdateError as error:
        if condition_failed(error):
            return False
        raise
    return True


def _finish(
    *,
    channel: str,
    entry: AuditEvent,
    state: str,
    detail: str | None = None,
    status_code: int | None = None,
    duration_ms: int | None = None,
) -> None:
    actions: list[Action] = [Delivery.state.set(state)]
    actions.append(Delivery.detail.set(detail) if detail else Delivery.detail.remove())
    actions.append(Delivery.status_code.set(status_code) if status_code is not None else Delivery.status_code.remove())
    actions.append(Delivery.duration_ms.set(duration_ms) if duration_ms is not None else Delivery.duration_ms.remove())
    Delivery(channel, entry.event_key).update(actions=actions)


# --- the channels ----------------------------------------------------------------------------------


def _mail(entry: AuditEvent, user_id: str) -> None:
    try:
        recipient = Member.get(entry.org_id, user_id, consistent_read=True)
    except Member.DoesNotExist:
        raise Skipped("no such member") from None
    if not recipient.email:
        raise Skipped("the member has no email address")
    notifications.send(
        mail=notifications.compose(entry=entry, recipient=recipient, event_id=event_id(entry)),
        to=recipient.email,
        event_id=event_id(entry),
    )


def _put_event(entry: AuditEvent) -> None:
    answer = _events().put_events(
        Entries=[
            {
                "Source": SOURCE,
                "DetailType": entry.action,
                "Detail": json.dumps(describe(entry)),
                "EventBusName": settings().event_bus,
                "Time": entry.at,
            }
        ]
    )
    if answer.get("FailedEntryCount"):
        [result] = answer["Entries"]
        raise Failed(f"EventBridge refused the event: {result.get('ErrorCode')} {result.get('ErrorMessage')}")


def _events() -> Any:
    return aws.client("events", attempts=1, read_timeout=10)  # the outbox retries, and records each attempt
