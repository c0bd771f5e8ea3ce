"""An organization's webhook endpoints: which URLs keyward posts audit events to, how each
delivery is signed (Standard Webhooks), and the rule that an endpoint failing too often is disabled.

An endpoint is an address on the internet, chosen by an admin: outside the local stage its URL
must be https and every address its host resolves to must be public (no private, loopback or
link-local address: nothing inside the VPC, not the metadata service). That is checked when the
endpoint is created and again at every delivery, which then connects to the very address it
checked, so a DNS answer that changes in between (DNS rebinding) cannot redirect it.

Every change of an endpoint is recorded, in the transaction of its audit event and under that
event's key, with the endpoint's settings before and after it (``WebhookChange``). An event is
delivered to the endpoints as they were when it was recorded — the order of event keys, which is
the audit table's order — whenever the stream hands it over: redirecting or disabling an
endpoint, acting and restoring it cannot move the events of the meantime elsewhere afterwards.
The events that change where an endpoint's events go (``webhook.changed``, ``webhook.disabled``,
``webhook.deleted`` by a member) also go to where they went before the change, whatever the
endpoint wants after it: the receiver an admin turns away hears of it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from pynamodb.exceptions import UpdateError

from chalicelib.base import audit, clock
from chalicelib.base.config import settings
from chalicelib.base.context import Caller
from chalicelib.base.errors import (
    ConcurrentChange,
    InvalidWebhookEvents,
    MalformedRequest,
    WebhookDeliveryNotFound,
    WebhookDisabled,
    WebhookNotFound,
    WebhookUrlRefused,
)
from chalicelib.base.models import (
    AuditEvent,
    Delivery,
    EndpointSettings,
    Webhook,
    WebhookChange,
)
from chalicelib.base.storage import ConditionsFailed, Item, condition_failed, transaction
from chalicelib.delivery import webhook_secrets

ENABLED = "enabled"
DISABLED = "disabled"
EVERY_EVENT = "*"
MAX_URL_LENGTH = 2048
MAX_EVENTS = 50
MAX_DESCRIPTION_LENGTH = 200
# An audit action as keyward names them: "key.registered", "backup_login.succeeded".
_ACTION = re.compile(r"[a-z][a-z_]{0,40}(\.[a-z][a-z_]{0,40}){0,3}")
CONNECT_TIMEOUT_SECONDS = 3.0
READ_TIMEOUT_SECONDS = 5.0
USER_AGENT = "keyward-webhooks/1"


@dataclass(frozen=True)
class CreatedWebhook:
    """A new endpoint together with the only copy of its signing secret the API ever shows."""

    webhook: Webhook
    secret: str


class DeliveryFailed(Exception):
    """The endpoint did not accept the delivery; ``status_code`` is its answer, if it gave one."""

    def __init__(self, reason: str, *, status_code: int | None = None) -> None:
        super().__init__(reason)
        self.status_code = status_code


def channel(*, org_id: str, webhook_id: str) -> str:
    """The delivery channel of one endpoint (see :class:`chalicelib.base.models.Delivery`)."""
    return f"webhook#{org_id}#{webhook_id}"


# --- managing endpoints ---------------------------------------------------------------------------


def create(*, caller: Caller, url: str, events: Iterable[str], description: str = "") -> CreatedWebhook:
    """``POST /org/webhooks``: a new endpoint for the caller's organization, and its secret.

    The secret is stored only sealed with KMS (:mod:`chalicelib.delivery.webhook_secrets`); this answer is
    the one place it is ever shown.

    Raises:
        WebhookUrlRefused: the URL is not one keyward posts to (see the module docstring).
        InvalidWebhookEvents: ``events`` is empty, too long, or holds something not an action name.
        WebhookSecretKeyUnavailable: KMS did not seal the secret; nothing was stored.
    """
    _check_address(url)
    wanted = _check_events(events)
    description = description.strip()
    if len(description) > MAX_DESCRIPTION_LENGTH or not description.isprintable():
        raise MalformedRequest(f"'description' must be at most {MAX_DESCRIPTION_LENGTH} printable characters.")
    org_id = caller.session.org_id
    webhook_id = "wh_" + secrets.token_urlsafe(12)
    secret = webhook_secrets.new_secret()
    webhook = Webhook(
        org_id,
        webhook_id,
        url=url,
        events=wanted,
        description=description,
        sealed_secret=webhook_secrets.seal(org_id=org_id, webhook_id=webhook_id, secret=secret),
        state=ENABLED,
        consecutive_failures=0,
        created_at=clock.now(),
        created_by=caller.actor.name,
    )
    webhook.revision = 1
    entry = audit.event(
        org_id=org_id,
        actor=caller.actor,
        action="webhook.created",
        target=webhook_id,
        client=caller.client,
        details={"url": url, "events": sorted(wanted)},
    )
    with transaction() as write:
        write.save(Item.WEBHOOK, webhook, condition=Webhook.webhook_id.does_not_exist())
        write.save(Item.AUDIT, entry)
        write.save(
            Item.WEBHOOK_CHANGE, _change(entry=entry, webhook_id=webhook_id, before=None, after=settings_of(webhook))
        )
    return CreatedWebhook(webhook=webhook, secret=secret)


def settings_of(webhook: Webhook) -> EndpointSettings:
    """Where the endpoint's events go now, and which."""
    return EndpointSettings(url=webhook.url, events=set(webhook.events), state=webhook.state)


def _change(
    *,
    entry: AuditEvent,
    webhook_id: str,
    before: EndpointSettings | None,
    after: EndpointSettings | None,
    sealed_secret: bytes | None = None,
) -> WebhookChange:
    return WebhookChange(
        entry.org_id,
        f"{entry.event_key}#{webhook_id}",
        event_key=entry.event_key,
        webhook_id=webhook_id,
        action=entry.action,
        before=before,
        after=after,
        sealed_secret=sealed_secret,
        ttl=entry.ttl,
    )


def _unchanged_since(revision: float | None) -> Any:
    """The condition that the endpoint is still at the revision read (one from before revisions has none)."""
    if revision is None:
        return Webhook.revision.does_not_exist()
    return Webhook.revision == revision


def list_webhooks(*, org_id: str) -> list[Webhook]:
    """``GET /org/webhooks``: the organization's endpoints, oldest first by ID."""
    return list(Webhook.query(org_id, consistent_read=True))


def delete(*, caller: Caller, webhook_id: str) -> None:
    """``DELETE /org/webhooks/{id}``: no later event is posted to it; ``webhook.deleted`` still is.

    Raises:
        WebhookNotFound: the organization has no such endpoint.
        ConcurrentChange: the endpoint kept being changed meanwhile.
        WebhookSecretKeyUnavailable: an endpoint from before sealing, whose secret KMS did not seal.
    """
    org_id = caller.session.org_id
    for _ in range(CHANGE_ATTEMPTS):
        webhook = _get(org_id=org_id, webhook_id=webhook_id)
        # Its last event is signed with its secret after the item is gone: the change keeps it, sealed.
        sealed = webhook.sealed_secret or webhook_secrets.seal(
            org_id=org_id, webhook_id=webhook_id, secret=webhook.secret or ""
        )
        entry = audit.event(
            org_id=org_id,
            actor=caller.actor,
            action="webhook.deleted",
            target=webhook_id,
            client=caller.client,
            details={"url": webhook.url, "events": sorted(webhook.events)},
        )
        try:
            with transaction() as write:
                write.delete(
                    Item.WEBHOOK,
                    Webhook(org_id, webhook_id),
                    condition=Webhook.webhook_id.exists() & _unchanged_since(webhook.revision),
                )
                write.save(Item.AUDIT, entry)
                write.save(
                    Item.WEBHOOK_CHANGE,
                    _change(
                        entry=entry,
                        webhook_id=webhook_id,
                        before=settings_of(webhook),
                        after=None,
                        sealed_secret=sealed,
                    ),
                )
        except ConditionsFailed:
            continue  # deleted or changed meanwhile: read it again
        return
    raise ConcurrentChange("The webhook kept changing meanwhile; try again.")


# Reads and writes of one change before it gives up on an endpoint that keeps being switched.
CHANGE_ATTEMPTS = 3


def change(
    *,
    caller: Caller,
    webhook_id: str,
    enabled: bool | None = None,
    url: str | None = None,
    events: Iterable[str] | None = None,
) -> Webhook:
    """``PATCH /org/webhooks/{id}``: enable or disable an endpoint, or change its URL or events.

    Enabling a disabled endpoint gives it a fresh run of attempts (its failures in a row start
    at zero again) and sends it the events recorded from then on; the events of the time it was
    disabled stay unsent. The audit log says ``webhook.enabled`` or ``webhook.disabled`` when the
    state changes, ``webhook.changed`` when only the URL or events do; a change that changes
    nothing writes nothing.

    Raises:
        WebhookNotFound: the organization has no such endpoint.
        WebhookUrlRefused: the new URL is not one keyward posts to.
        InvalidWebhookEvents: the new ``events`` are empty, too many, or not action names.
        ConcurrentChange: the endpoint was enabled or disabled by someone else meanwhile, again and again.
    """
    if url is not None:
        _check_address(url)
    wanted = _check_events(events) if events is not None else None
    org_id = caller.session.org_id
    for _ in range(CHANGE_ATTEMPTS):
        webhook = _get(org_id=org_id, webhook_id=webhook_id)
        state_before, now, before = webhook.state, clock.now(), settings_of(webhook)
        actions: list[Any] = []
        action = "webhook.changed"
        if enabled is True and state_before == DISABLED:
            action = "webhook.enabled"
            actions += [
                Webhook.state.set(ENABLED),
                Webhook.consecutive_failures.set(0),
                Webhook.failing_since.remove(),
                Webhook.disabled_at.remove(),
                Webhook.enabled_at.set(now),
            ]
            webhook.state, webhook.consecutive_failures, webhook.disabled_at, webhook.enabled_at = ENABLED, 0, None, now
            webhook.failing_since = None
        elif enabled is False and state_before == ENABLED:
            action = "webhook.disabled"
            actions += [Webhook.state.set(DISABLED), Webhook.disabled_at.set(now)]
            webhook.state, webhook.disabled_at = DISABLED, now
        changed = []
        if url is not None and url != webhook.url:
            changed.append("url")
            actions.append(Webhook.url.set(url))
            webhook.url = url
        if wanted is not None and wanted != webhook.events:
            changed.append("events")
            actions.append(Webhook.events.set(wanted))
            webhook.events = wanted
        if not actions:
            return webhook
        if webhook.sealed_secret is None and webhook.secret is not None:
            # An endpoint from before secrets were sealed: its secret leaves the table with this change.
            actions += [
                Webhook.sealed_secret.set(
                    webhook_secrets.seal(org_id=org_id, webhook_id=webhook_id, secret=webhook.secret)
                ),
                Webhook.secret.remove(),
            ]
        details: dict[str, Any] = {"url": webhook.url, "events": sorted(webhook.events)}
        if changed:
            details["changed"] = changed
        if "url" in changed:
            details["previous_url"] = before.url
        actions.append(Webhook.revision.add(1))
        entry = audit.event(
            org_id=org_id, actor=caller.actor, action=action, target=webhook_id, client=caller.client, details=details
        )
        try:
            with transaction() as write:
                # Conditional on the revision read: an endpoint that a delivery disabled, or another
                # admin changed, meanwhile is read again, so the event says what really changed.
                write.update(
                    Item.WEBHOOK,
                    Webhook(org_id, webhook_id),
                    actions=actions,
                    condition=Webhook.webhook_id.exists()
                    & (Webhook.state == state_before)
                    & _unchanged_since(webhook.revision),
                )
                write.save(Item.AUDIT, entry)
                write.save(
                    Item.WEBHOOK_CHANGE,
                    _change(entry=entry, webhook_id=webhook_id, before=before, after=settings_of(webhook)),
                )
        except ConditionsFailed:
            continue  # deleted or changed meanwhile
        return webhook
    raise ConcurrentChange("The webhook kept changing meanwhile; try again.")


def seal_clear_secrets() -> int:
    """``python -m keyward webhooks seal-secrets``: seal every secret still stored in clear (an
    endpoint from before secrets were sealed) and remove the clear copy; returns how many.

    Each item changes only if its clear secret is still the one read, so a run beside the API
    cannot overwrite an endpoint deleted, or sealed by a change, meanwhile.
    """
    sealed = 0
    for webhook in Webhook.scan(Webhook.secret.exists(), consistent_read=True):
        if webhook.secret is None:
            continue
        try:
            Webhook(webhook.org_id, webhook.webhook_id).update(
                actions=[
                    Webhook.sealed_secret.set(
                        webhook_secrets.seal(
                            org_id=webhook.org_id, webhook_id=webhook.webhook_id, secret=webhook.secret
                        )
                    ),
                    Webhook.secret.remove(),
                ],
                condition=Webhook.secret == webhook.secret,
            )
        except UpdateError as error:
            if not condition_failed(error):
                raise
            continue
        sealed += 1
    return sealed


def _get(*, org_id: str, webhook_id: str, attributes: list[str] | None = None) -> Webhook:
    try:
        return Webhook.get(org_id, webhook_id, consistent_read=True, attributes_to_get=attributes)
    except Webhook.DoesNotExist:
        raise WebhookNotFound("No such webhook.") from None


def recent_deliveries(*, org_id: str, webhook_id: str, limit: int) -> list[Delivery]:
    """``GET /org/webhooks/{id}/deliveries``: the endpoint's latest deliveries, newest first.

    Raises:
        WebhookNotFound: the organization has no such endpoint.
    """
    _get(org_id=org_id, webhook_id=webhook_id, attributes=["webhook_id"])
    return list(
        Delivery.query(
            channel(org_id=org_id, webhook_id=webhook_id),
            scan_index_forward=False,
            limit=limit,
            page_size=limit,
            consistent_read=True,
        )
    )


# --- a test event, and an event sent again ----------------------------------------------------------

# An admin asks for these; each goes to its one endpoint (its ``target``) and to no other.
PING = "webhook.ping"
REDELIVERED = "webhook.redelivered"
ADDRESSED = frozenset({PING, REDELIVERED})
# The longest event key a delivery ID may name (keys are 36 characters).
_MAX_EVENT_KEY = 64


def delivery_id(event_key: str) -> str:
    """A delivery's ID in the API: its key within the endpoint's deliveries, made URL-safe."""
    return "dlv_" + base64.urlsafe_b64encode(event_key.encode()).decode().rstrip("=")


def event_key_of(delivery: str) -> str:
    """The key a delivery ID names.

    Raises:
        WebhookDeliveryNotFound: not a delivery ID keyward gives.
    """
    encoded = delivery.removeprefix("dlv_")
    if encoded == delivery or not 0 < len(encoded) <= _MAX_EVENT_KEY * 4 // 3 + 1:
        raise WebhookDeliveryNotFound("No such delivery.")
    try:
        key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        raise WebhookDeliveryNotFound("No such delivery.") from None
    if not key.isprintable() or delivery_id(key) != delivery:
        raise WebhookDeliveryNotFound("No such delivery.")
    return key


def ping(*, caller: Caller, webhook_id: str) -> str:
    """``POST /org/webhooks/{id}/ping``: send the endpoint a test event (``webhook.ping``) now;
    returns the ID its delivery will be listed under.

    The request is an audit event like any admin's act on an endpoint: the delivery function,
    the one that may decrypt the endpoint's secret, signs and posts it from the audit table's
    stream, and lists it among the endpoint's deliveries. A disabled endpoint is pinged too, which
    is how an admin learns it works again before enabling it; a ping neither counts as a failure
    of the endpoint nor ends its run of failures — that is what real deliveries tell.

    Raises:
        WebhookNotFound: the organization has no such endpoint.
    """
    org_id = caller.session.org_id
    webhook = _get(org_id=org_id, webhook_id=webhook_id)
    entry = audit.event(
        org_id=org_id,
        actor=caller.actor,
        action=PING,
        target=webhook_id,
        client=caller.client,
        details={"url": webhook.url},
    )
    entry.save()
    return delivery_id(entry.event_key)


def redeliver(*, caller: Caller, webhook_id: str, delivery: str) -> str:
    """``POST /org/webhooks/{id}/deliveries/{delivery_id}/redeliver``: send that delivery's event
    to the endpoint again, as it is now; returns the ID of the new delivery.

    The new delivery carries the event's own ID (``webhook-id``), so that a receiver which has it
    already can tell, and a fresh ``webhook-timestamp`` and signature, as Standard Webhooks asks
    of every retry. It goes from the delivery function like any other (see :func:`ping`), and
    counts towards the endpoint's run of failures like any other.

    Raises:
        WebhookNotFound: the organization has no such endpoint.
        WebhookDeliveryNotFound: the endpoint has no delivery of that ID (they are kept 30 days).
        WebhookDisabled: the endpoint is disabled; enable it first (a ping is allowed).
    """
    org_id = caller.session.org_id
    webhook = _get(org_id=org_id, webhook_id=webhook_id)
    try:
        earlier = Delivery.get(
            channel(org_id=org_id, webhook_id=webhook_id), event_key_of(delivery), consistent_read=True
        )
    except Delivery.DoesNotExist:
        raise WebhookDeliveryNotFound("The endpoint has no such delivery (deliveries are kept 30 days).") from None
    if webhook.state != ENABLED:
        raise WebhookDisabled("The webhook is disabled: enable it to send it events again, or send it a test event.")
    entry = audit.event(
        org_id=org_id,
        actor=caller.actor,
        action=REDELIVERED,
        target=webhook_id,
        client=caller.client,
        details={"url": webhook.url, "event_id": earlier.event_id, "action": earlier.action, "delivery_id": delivery},
    )
    entry.save()
    return delivery_id(entry.event_key)


def event_sent_again(*, entry: AuditEvent) -> AuditEvent | None:
    """The event a ``webhook.redelivered`` event asks to send again; None when it is gone (its
    delivery or the event expired meanwhile)."""
    details = entry.details.as_dict() if entry.details is not None else {}
    try:
        earlier = Delivery.get(
            channel(org_id=entry.org_id, webhook_id=entry.target or ""),
            event_key_of(str(details.get("delivery_id"))),
            consistent_read=True,
        )
        event_key = earlier.redelivers or earlier.event_key
        kept_under = earlier.shard_key or audit.moved_to(entry.org_id, event_key)
        return AuditEvent.get(kept_under, event_key, consistent_read=True)
    except (Delivery.DoesNotExist, AuditEvent.DoesNotExist, WebhookDeliveryNotFound):
        return None


def describe(webhook: Webhook) -> dict[str, Any]:
    return {
        "id": webhook.webhook_id,
        "url": webhook.url,
        "events": sorted(webhook.events),
        "description": webhook.description,
        "state": webhook.state,
        "consecutive_failures": webhook.consecutive_failures,
        "created_at": clock.iso(webhook.created_at),
        "created_by": webhook.created_by,
        "disabled_at": clock.iso(webhook.disabled_at),
        "failing_since": clock.iso(webhook.failing_since),
    }


def describe_delivery(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery_id(delivery.event_key),
        "event_id": delivery.event_id,
        "action": delivery.action,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "last_attempt_at": clock.iso(delivery.last_attempt_at),
        "status_code": delivery.status_code,
        "duration_ms": delivery.duration_ms,
        "detail": delivery.detail,
        "redelivery": delivery.redelivers is not None,
    }


def _check_address(url: str) -> None:
    checked = check_url(url)
    if not settings().stage == "local":
        resolve_public(checked)


def _check_events(events: Iterable[str]) -> set[str]:
    wanted = set(events)
    if not wanted or len(wanted) > MAX_EVENTS:
        raise InvalidWebhookEvents(f"'events' must name 1 to {MAX_EVENTS} audit actions, or \"*\" for all.")
    for name in wanted:
        if name != EVERY_EVENT and not (isinstance(name, str) and _ACTION.fullmatch(name)):
            raise InvalidWebhookEvents(f'{name!r} is not an audit action (such as "key.registered") or "*".')
    return wanted


def wants(webhook: Webhook, entry: AuditEvent) -> bool:
    """Whether an endpoint none of whose changes is recorded (from before they were, or whose
    records expired) is sent this event: it is enabled, wants the action, and existed (and was
    last enabled) when the event was recorded."""
    return (
        webhook.state == ENABLED
        and (EVERY_EVENT in webhook.events or entry.action in webhook.events)
        and entry.at >= (webhook.enabled_at or webhook.created_at)
    )


# Changes that turn an endpoint's events away from where they went: their events go there too.
TOLD_WHERE_EVENTS_WENT = frozenset({"webhook.changed", "webhook.disabled", "webhook.deleted"})


@dataclass(frozen=True)
class Destination:
    """Where one event goes for one endpoint, and how it is signed."""

    org_id: str
    webhook_id: str
    url: str
    channel: str
    sealed_secret: bytes | None
    legacy_secret: str | None
    # The endpoint as it is now, when this is its current URL: its run of failures counts the delivery.
    current: Webhook | None


def destinations(*, entry: AuditEvent) -> list[Destination]:
    """Every endpoint's destinations for this event: where the endpoint's events went when it was
    recorded (if it wanted it then), and, for a change in TOLD_WHERE_EVENTS_WENT made by a member,
    where they went before that change. A test event or an event sent again goes only to its
    endpoint, as it is now."""
    if entry.action in ADDRESSED:
        return _addressed(entry)
    now = {webhook.webhook_id: webhook for webhook in Webhook.query(entry.org_id, consistent_read=True)}
    history: dict[str, list[WebhookChange]] = {}
    for change in WebhookChange.query(entry.org_id, consistent_read=True):  # in the order of their events
        history.setdefault(change.webhook_id, []).append(change)
    found: list[Destination] = []
    for webhook_id in sorted(set(now) | set(history)):
        found += _destinations_of(
            entry=entry, webhook_id=webhook_id, now=now.get(webhook_id), changes=history.get(webhook_id, [])
        )
    return found


def _destinations_of(
    *, entry: AuditEvent, webhook_id: str, now: Webhook | None, changes: list[WebhookChange]
) -> list[Destination]:
    urls: list[str] = []
    if not changes:
        if now is not None and wants(now, entry):
            urls.append(now.url)
    else:
        earlier = [change for change in changes if change.event_key <= entry.event_key]
        in_force: EndpointSettings | None = earlier[-1].after if earlier else changes[0].before
        if not earlier and now is not None and entry.at < now.created_at:
            in_force = None  # older than the endpoint: its first recorded change is from before changes were
        if in_force is not None and _wanted(in_force, entry):
            urls.append(in_force.url)
        this_change = earlier[-1] if earlier and earlier[-1].event_key == entry.event_key else None
        if (
            this_change is not None
            and this_change.before is not None
            and entry.action in TOLD_WHERE_EVENTS_WENT
            and entry.actor_kind != audit.ActorKind.SYSTEM.value
            and this_change.before.url not in urls
        ):
            urls.append(this_change.before.url)
    if not urls:
        return []
    sealed: bytes | None
    legacy: str | None
    if now is not None:
        sealed, legacy = now.sealed_secret, now.secret
    else:
        sealed = next((change.sealed_secret for change in reversed(changes) if change.sealed_secret is not None), None)
        legacy = None
        if sealed is None:
            return []  # deleted before deletions kept the secret: nothing signs for it
    main = channel(org_id=entry.org_id, webhook_id=webhook_id)
    return [
        Destination(
            org_id=entry.org_id,
            webhook_id=webhook_id,
            url=url,
            # The same event to a second URL of the endpoint is a delivery of its own.
            channel=main if number == 0 else f"{main}#before-change",
            sealed_secret=sealed,
            legacy_secret=legacy,
            current=now if now is not None and now.url == url else None,
        )
        for number, url in enumerate(urls)
    ]


def _addressed(entry: AuditEvent) -> list[Destination]:
    try:
        webhook = Webhook.get(entry.org_id, entry.target or "", consistent_read=True)
    except Webhook.DoesNotExist:
        return []  # deleted meanwhile
    if entry.action == REDELIVERED and webhook.state != ENABLED:
        return []  # disabled meanwhile: a disabled endpoint is sent no event
    return [
        Destination(
            org_id=entry.org_id,
            webhook_id=webhook.webhook_id,
            url=webhook.url,
            channel=channel(org_id=entry.org_id, webhook_id=webhook.webhook_id),
            sealed_secret=webhook.sealed_secret,
            legacy_secret=webhook.secret,
            # An event sent again counts in the endpoint's run of failures; a test event does not.
            current=webhook if entry.action == REDELIVERED else None,
        )
    ]


def _wanted(endpoint: EndpointSettings, entry: AuditEvent) -> bool:
    return endpoint.state == ENABLED and (EVERY_EVENT in endpoint.events or entry.action in endpoint.events)


# --- where keyward may post -------------------------------------------------------------------------


def check_url(url: str) -> SplitResult:
    """The URL's parts, if it is one keyward may post to (the address check comes with resolving).

    Raises:
        WebhookUrlRefused: not an absolute http(s) URL, credentials in it, or plain http outside the local stage.
    """
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH or not url.isprintable() or " " in url:
        raise WebhookUrlRefused(f"'url' must be an absolute https URL of at most {MAX_URL_LENGTH} characters.")
    schemes = ("http", "https") if settings().stage == "local" else ("https",)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port out of range)
        valid = parts.scheme in schemes and bool(parts.hostname)
    except ValueError:  # "http://[::1", a port of 99999
        valid = False
    if not valid:
        raise WebhookUrlRefused("'url' must be an absolute https URL.")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise WebhookUrlRefused("'url' must not hold credentials or a fragment; sign-in is the signature's job.")
    return parts


def resolve_public(parts: SplitResult) -> str:
    """The address to connect to: the host's first address, once every one of them is public.

    Raises:
        WebhookUrlRefused: the host does not resolve, or one of its addresses is not public.
    """
    try:
        addresses = _addresses(parts)
    except (UnicodeError, OSError):
        raise WebhookUrlRefused(f"{parts.hostname!r} does not resolve.") from None
    if not addresses:
        raise WebhookUrlRefused(f"{parts.hostname!r} does not resolve.")
    for address in addresses:
        if not _public(address):
            raise WebhookUrlRefused(f"{parts.hostname!r} resolves to a private, loopback or link-local address.")
    return addresses[0]


def _addresses(parts: SplitResult) -> list[str]:
    """Every address the URL's host resolves to (what DNS says now)."""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return [str(info[4][0]) for info in socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)]


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


# --- delivering ---------------------------------------------------------------------------------


def sign(*, secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: ``v1,`` and the base64 HMAC-SHA256 of ``id.timestamp.body``
    under the secret's key (Standard Webhooks)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def post(*, url: str, secret: str, message_id: str, timestamp: int, body: bytes) -> int:
    """Post one delivery to ``url``, signed with ``secret``; returns the endpoint's 2xx status.

    Raises:
        DeliveryFailed: the URL is no longer allowed, the endpoint is unreachable or slow, or it
            answered anything but 2xx (redirects are not followed).
    """
    import urllib3  # only the delivery function posts

    try:
        parts = check_url(url)
        if settings().stage == "local":
            address = _addresses(parts)[0]
        else:
            address = resolve_public(parts)
    except (WebhookUrlRefused, OSError, IndexError) as refused:
        raise DeliveryFailed(str(refused)) from None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT_SECONDS, read=READ_TIMEOUT_SECONDS)
    if parts.scheme == "https":
        # Connect to the checked address, but verify the certificate against the URL's host name.
        pool: Any = urllib3.HTTPSConnectionPool(
            address,
            port,
            timeout=timeout,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            server_hostname=parts.hostname,
            assert_hostname=parts.hostname,
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False)
    headers = {
        "Host": parts.netloc,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret=secret, message_id=message_id, timestamp=timestamp, body=body),
    }
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        response = pool.urlopen(
            "POST",
            path,
            body=body,
            headers=headers,
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
        )
        status = response.status
        response.drain_conn()
        response.release_conn()
    except urllib3.exceptions.HTTPError as error:
        raise DeliveryFailed(
            f"{type(error).__name__}: the endpoint did not answer in time or refused the connection"
        ) from None
    finally:
        pool.close()
    if not 200 <= status < 300:
        raise DeliveryFailed(f"the endpoint answered HTTP {status}", status_code=status)
    return status


def record_success(*, webhook: Webhook) -> None:
    """A delivery went through: the run of failures of an enabled endpoint, if any, is over. (An
    event recorded before keyward disabled the endpoint may still go through on a retry: that
    does not undo the run that disabled it; enabling it again does.)"""
    if not webhook.consecutive_failures:
        return
    try:
        Webhook(webhook.org_id, webhook.webhook_id).update(
            actions=[Webhook.consecutive_failures.set(0), Webhook.failing_since.remove()],
            condition=Webhook.webhook_id.exists() & (Webhook.state == ENABLED),
        )
    except UpdateError as error:
        if not condition_failed(error):
            raise


def record_failure(*, webhook: Webhook, reason: str) -> bool:
    """A delivery failed after its retries; returns True when this failure disabled the endpoint.

    The endpoint is disabled when its failures in a row reach the configured limit; the audit
    event of that is mailed to the organization's admins like any other.
    """
    try:
        updated = Webhook(webhook.org_id, webhook.webhook_id).update(
            # The run's first failure says since when it has been failing; the others keep that.
            actions=[
                Webhook.consecutive_failures.add(1),
                Webhook.failing_since.set(Webhook.failing_since | clock.now()),
            ],
            condition=Webhook.webhook_id.exists() & (Webhook.state == ENABLED),
        )
    except UpdateError as error:
        if condition_failed(error):
            return False  # deleted or disabled meanwhile
        raise
    failures = int(updated["Attributes"]["consecutive_failures"]["N"])
    if failures < settings().webhook_disable_after_failures:
        return False
    current = Webhook.from_raw_data(updated["Attributes"])
    entry = audit.event(
        org_id=webhook.org_id,
        actor=audit.SYSTEM,
        action="webhook.disabled",
        target=webhook.webhook_id,
        details={"url": current.url, "failures": failures, "last_error": reason[:300]},
    )
    after = settings_of(current)
    after.state = DISABLED
    try:
        with transaction() as write:
            write.update(
                Item.WEBHOOK,
                Webhook(webhook.org_id, webhook.webhook_id),
                actions=[Webhook.state.set(DISABLED), Webhook.disabled_at.set(clock.now()), Webhook.revision.add(1)],
                condition=Webhook.webhook_id.exists() & (Webhook.state == ENABLED) & _unchanged_since(current.revision),
            )
            write.save(Item.AUDIT, entry)
            write.save(
                Item.WEBHOOK_CHANGE,
                _change(entry=entry, webhook_id=webhook.webhook_id, before=settings_of(current), after=after),
            )
    except ConditionsFailed:
        return False  # another delivery disabled it first
    return True
